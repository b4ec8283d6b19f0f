"""The local exchange's REST side: the ``/api/v3`` routes and the daily dump archives (``data.binance.vision``
layout) with their routes. Pages, klines, amounts and the weight limiter live in the exchange core."""
