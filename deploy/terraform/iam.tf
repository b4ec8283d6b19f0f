# Least privilege: each task role reaches only the streams and lake prefixes its service uses.
#   ingestor : put market-sbe-* and market-heartbeat; write bronze/{trades,bookTicker,depth}/ and lake/ (known gaps)
#   processor: read market-sbe-* and market-heartbeat; put features-1s and dead-letters; read models/ (fitted feature parameters travel with the model);
#              write silver/features_1s_live/
#   inference: read trades, best bid/ask and heartbeats (its fallback computes a missing row itself) and
#              features-1s (it predicts when a row arrives); put predictions-1s; read models/;
#              write gold/predictions_1s/
locals {
  stream_arn = { for name, s in aws_kinesis_stream.bus : name => s.arn }
  task_access = {
    ingestor = {
      put_streams  = local.market_streams
      read_streams = []
      read_prefix  = ["bronze/", "lake/"]
      # Only the bronze kinds the live ingestor writes: bronze/bus_archive/ is Firehose's (firehose.tf).
      write_prefix = ["bronze/trades/", "bronze/bookTicker/", "bronze/depth/", "lake/", "tmp/"]
    }
    processor = {
      put_streams  = ["features-1s", "dead-letters"]
      read_streams = local.market_streams
      read_prefix  = ["models/"]
      write_prefix = ["silver/features_1s_live/"]
    }
    inference = {
      put_streams  = ["predictions-1s"]
      read_streams = ["market-sbe-trade", "market-sbe-bestbidask", "market-heartbeat", "features-1s"]
      read_prefix  = ["models/"]
      write_prefix = ["gold/predictions_1s/"]
    }
  }
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each           = local.task_access
  name               = "btcpipe-${var.environment}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.task_access

  dynamic "statement" {
    for_each = length(each.value.put_streams) > 0 ? [1] : []
    content {
      sid       = "PutStreams"
      actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
      resources = [for s in each.value.put_streams : local.stream_arn[s]]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.read_streams) > 0 ? [1] : []
    content {
      sid = "ReadStreams"
      actions = [
        "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStreamSummary", "kinesis:ListShards",
      ]
      resources = [for s in each.value.read_streams : local.stream_arn[s]]
    }
  }

  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [for p in distinct(concat(each.value.read_prefix, each.value.write_prefix)) : "${p}*"]
    }
  }

  statement {
    sid       = "ReadOwnPrefixes"
    actions   = ["s3:GetObject"]
    resources = [for p in distinct(concat(each.value.read_prefix, each.value.write_prefix)) : "${aws_s3_bucket.lake.arn}/${p}*"]
  }

  dynamic "statement" {
    for_each = length(each.value.write_prefix) > 0 ? [1] : []
    content {
      sid       = "WriteOwnPrefixes"
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = [for p in each.value.write_prefix : "${aws_s3_bucket.lake.arn}/${p}*"]
    }
  }

  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.btcpipe.arn]
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.task_access
  name     = "btcpipe-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}

# The execution role pulls the image, writes logs and hands the tasks their secrets.
resource "aws_iam_role" "execution" {
  name               = "btcpipe-${var.environment}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "ReadServiceSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.binance_api_key_secret_arn, aws_secretsmanager_secret.redis_auth.arn]
  }
  statement {
    sid       = "DecryptServiceSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.btcpipe.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "btcpipe-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
