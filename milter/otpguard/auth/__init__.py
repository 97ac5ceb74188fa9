"""Sender authentication over DNS: the resolver (dnsio), SPF/DKIM/ARC/DMARC (verify), RFC 8601 (authresults).

Depends on the core's data model only; the engine passes it a DNS client.
"""
