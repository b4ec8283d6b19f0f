"""The local exchange's REST side: the ``/api/v3`` routes, klines and aggTrades pages, exact quote amounts,
the request-weight limiter and the daily dump archives (``data.binance.vision`` layout)."""
