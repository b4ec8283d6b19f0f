# CloudWatch alarms on the EMF metrics the services log (btcpipe/emf.py), mirroring the Prometheus alerts in
# deploy/prometheus/alerts.yml (the "alert" of each entry names its twin; docs/OPERATIONS.md has the runbook).
# Each alarm watches the service-wide dimension set [Service] and notifies the SNS topic of its twin's severity
# (sns.tf), on alarm and on recovery.
locals {
  alarms = {
    feature-stale = {
      alert = "BtcpipeFeatureStale", severity = "critical"
      metric = "FeatureAge", service = "processor", statistic = "Maximum"
      period = 60, periods = 1, threshold = 3, comparison = "GreaterThanThreshold", missing = "breaching"
    }
    processor-lagging = {
      alert = "BtcpipeProcessorLagging", severity = "warning"
      metric = "ProcessorLag", service = "processor", statistic = "Maximum"
      period = 60, periods = 2, threshold = 2, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    consumer-lag-high = {
      alert = "BtcpipeConsumerLagHigh", severity = "warning"
      metric = "ConsumerLag", service = "processor", statistic = "Maximum"
      period = 60, periods = 2, threshold = 5000, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    ingest-silent = {
      alert = "BtcpipeIngestSilent", severity = "critical"
      metric = "IngestMessages", service = "ingestor", statistic = "Sum"
      period = 60, periods = 2, threshold = 1, comparison = "LessThanThreshold", missing = "breaching"
    }
    decode-errors = {
      alert = "BtcpipeDecodeErrors", severity = "warning"
      metric = "DecodeErrors", service = "ingestor", statistic = "Sum"
      period = 300, periods = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    resync-storm = {
      alert = "BtcpipeResyncStorm", severity = "warning"
      metric = "BookResyncs", service = "ingestor", statistic = "Sum"
      period = 600, periods = 1, threshold = 3, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    reconnect-storm = {
      alert = "BtcpipeReconnectStorm", severity = "warning"
      metric = "Reconnects", service = "ingestor", statistic = "Sum"
      period = 600, periods = 1, threshold = 5, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    trade-gaps-unfilled = {
      alert = "BtcpipeTradeGapsUnfilled", severity = "critical"
      metric = "UnfilledTradeGaps", service = "ingestor", statistic = "Sum"
      period = 900, periods = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    inference-latency-high = {
      alert = "BtcpipeInferenceLatencyHigh", severity = "critical"
      metric = "InferenceLatencyP95", service = "inference"
      statistic = "Maximum", period = 60, periods = 2, threshold = 100, comparison = "GreaterThanThreshold"
      missing = "notBreaching"
    }
    online-store-miss-rate = {
      alert = "BtcpipeOnlineStoreMissRate", severity = "warning"
      metric = "StoreMissRate", service = "inference", statistic = "Average"
      period = 60, periods = 5, threshold = 5, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    model-stale = {
      alert = "BtcpipeModelStale", severity = "warning"
      metric = "ModelAge", service = "inference", statistic = "Minimum"
      period = 300, periods = 2, threshold = 604800, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
    model-refused = {
      alert = "BtcpipeModelRefused", severity = "critical"
      metric = "ModelRefusals", service = "inference", statistic = "Sum"
      period = 900, periods = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "btcpipe" {
  for_each            = local.alarms
  alarm_name          = "btcpipe-${var.environment}-${each.key}"
  alarm_description   = "Mirrors ${each.value.alert}; runbook: docs/OPERATIONS.md#${lower(each.value.alert)}"
  namespace           = local.emf_namespace
  metric_name         = each.value.metric
  dimensions          = { Service = each.value.service }
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alerts[each.value.severity].arn]
  ok_actions          = [aws_sns_topic.alerts[each.value.severity].arn]
}

# More than 1 % of ticks without a prediction over 5 minutes: a ratio of two EMF metrics.
resource "aws_cloudwatch_metric_alarm" "skipped_ticks" {
  alarm_name          = "btcpipe-${var.environment}-skipped-ticks"
  alarm_description   = "Mirrors BtcpipeSkippedTicks; runbook: docs/OPERATIONS.md#btcpipeskippedticks"
  evaluation_periods  = 1
  threshold           = 0.01
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts["warning"].arn]
  ok_actions          = [aws_sns_topic.alerts["warning"].arn]

  metric_query {
    id          = "ratio"
    expression  = "skipped / IF(ticks > 0, ticks, 1)"
    label       = "Share of ticks without a prediction"
    return_data = true
  }

  metric_query {
    id = "skipped"
    metric {
      namespace   = local.emf_namespace
      metric_name = "SkippedTicks"
      dimensions  = { Service = "inference" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "ticks"
    metric {
      namespace   = local.emf_namespace
      metric_name = "InferenceTicks"
      dimensions  = { Service = "inference" }
      stat        = "Sum"
      period      = 300
    }
  }
}

# Consumer lag as Kinesis itself measures it (the plan's "Kinesis consumer lag -> CloudWatch alarm -> SNS"): the age
# of the last record the processor's GetRecords returned. It needs no EMF, so it fires even when the processor
# cannot log. 30 s is 30 missed feature seconds.
resource "aws_cloudwatch_metric_alarm" "kinesis_iterator_age" {
  for_each            = toset(local.market_streams)
  alarm_name          = "btcpipe-${var.environment}-iterator-age-${each.key}"
  alarm_description   = "Mirrors BtcpipeConsumerLagHigh, measured by Kinesis; runbook: docs/OPERATIONS.md#btcpipeconsumerlaghigh"
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.bus[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 30000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts["warning"].arn]
  ok_actions          = [aws_sns_topic.alerts["warning"].arn]
}
