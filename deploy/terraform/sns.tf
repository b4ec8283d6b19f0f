# Alarm notifications, one SNS topic per severity (the severities of deploy/prometheus/alerts.yml):
#   critical -> PagerDuty (an HTTPS subscription to the service's CloudWatch integration URL) and Slack
#   warning  -> Slack (AWS Chatbot)
#   info     -> Slack (AWS Chatbot)
# Each CloudWatch alarm in cloudwatch.tf publishes to the topic of its Prometheus twin's severity. Subscriptions
# are variables: empty means the topic exists and the alarms publish, but nobody is notified yet.
locals {
  severities = toset(["critical", "warning", "info"])
  slack      = var.slack_workspace_id != "" && var.slack_channel_id != ""
}

resource "aws_sns_topic" "alerts" {
  for_each          = local.severities
  name              = "btcpipe-${var.environment}-alerts-${each.key}"
  kms_master_key_id = aws_kms_key.btcpipe.arn
}

# Only CloudWatch alarms of this account may publish.
data "aws_iam_policy_document" "alerts_topic" {
  for_each = local.severities
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  for_each = local.severities
  arn      = aws_sns_topic.alerts[each.key].arn
  policy   = data.aws_iam_policy_document.alerts_topic[each.key].json
}

# PagerDuty's CloudWatch integration: SNS posts the alarm JSON to the integration URL (it carries the key).
resource "aws_sns_topic_subscription" "pagerduty" {
  count                  = var.pagerduty_endpoint_url == "" ? 0 : 1
  topic_arn              = aws_sns_topic.alerts["critical"].arn
  protocol               = "https"
  endpoint               = var.pagerduty_endpoint_url
  endpoint_auto_confirms = true
}

# Slack through AWS Chatbot: the workspace is authorised once in the Chatbot console; this maps a channel to the
# topics. The role lets people in the channel read alarms and metrics, nothing else.
data "aws_iam_policy_document" "chatbot_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["chatbot.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "chatbot" {
  count              = local.slack ? 1 : 0
  name               = "btcpipe-${var.environment}-chatbot"
  assume_role_policy = data.aws_iam_policy_document.chatbot_assume.json
}

resource "aws_iam_role_policy_attachment" "chatbot_read_alarms" {
  count      = local.slack ? 1 : 0
  role       = aws_iam_role.chatbot[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/CloudWatchReadOnlyAccess"
}

resource "aws_chatbot_slack_channel_configuration" "alerts" {
  count                 = local.slack ? 1 : 0
  configuration_name    = "btcpipe-${var.environment}-alerts"
  slack_team_id         = var.slack_workspace_id
  slack_channel_id      = var.slack_channel_id
  iam_role_arn          = aws_iam_role.chatbot[0].arn
  guardrail_policy_arns = ["arn:${data.aws_partition.current.partition}:iam::aws:policy/CloudWatchReadOnlyAccess"]
  sns_topic_arns        = [for s in sort(tolist(local.severities)) : aws_sns_topic.alerts[s].arn]
  logging_level         = "ERROR"
}
