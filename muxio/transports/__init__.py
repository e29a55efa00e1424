"""Transports: TCP, UDP and KCP, all giving handlers the same Transport API."""
