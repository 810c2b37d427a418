"""Polymarket's Real-Time Data Socket (RTDS): the BTC reference prices the markets resolve on.

`wire` decodes the socket's messages once at the edge, `reference` keeps the latest prices and captures each
window's opening price (pure), `stream` owns the connection (subscribe, PING keepalive, reconnect).
"""
