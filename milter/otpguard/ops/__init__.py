"""Operations: Prometheus metrics, shared counter state, genuine-code bursts, the log lines."""
