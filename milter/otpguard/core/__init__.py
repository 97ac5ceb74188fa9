"""The pure analysis core: message bytes in, Decision out; no I/O, no clock, no milter.

Parsing (mime, charset, headerfields, html, attachments, urls, parse), text matching
(normalize, vocabulary, domains), brand profiles (brand), the checks (checks/), their order
(pipeline) and scoring (verdict), over the data model (model, message, settings).
"""
