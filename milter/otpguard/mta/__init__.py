"""Serving Postfix: the pymilter adapter, end-of-message handling, actions and headers, quarantine.

Only mta.adapter imports Milter; everything else here can be tested without libmilter.
"""
