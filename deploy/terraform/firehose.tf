# Kinesis Data Firehose: the bus archived to the lake on AWS. Each delivery stream reads one Kinesis stream and
# writes its records as they travelled (Avro single-object payloads, concatenated; Avro bodies are self-delimiting,
# so a reader with the schemas splits them again), GZIP-compressed and SSE-KMS encrypted:
#   market-sbe-trade -> bronze/bus_archive/stream=market-sbe-trade/   (bronze: raw)
#   features-1s      -> silver/bus_archive/stream=features-1s/        (silver: the live feature rows)
#   predictions-1s   -> gold/bus_archive/stream=predictions-1s/       (gold: the predictions)
# These prefixes belong to Firehose alone; the services keep writing their Parquet datasets under their own
# prefixes (iam.tf), so no prefix has two writers (docs/OPERATIONS.md, "Who writes which prefix").
locals {
  firehose_deliveries = {
    market-sbe-trade = "bronze"
    features-1s      = "silver"
    predictions-1s   = "gold"
  }
  firehose_prefix = { for s, layer in local.firehose_deliveries : s => "${layer}/bus_archive/stream=${s}/" }
}

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/btcpipe/${var.environment}/firehose"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.btcpipe.arn
}

resource "aws_cloudwatch_log_stream" "firehose" {
  for_each       = local.firehose_deliveries
  name           = "s3-delivery-${each.key}"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "btcpipe-${var.environment}-firehose"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
}

# Read the three streams, write only the archive prefixes, use the key, log delivery errors.
data "aws_iam_policy_document" "firehose" {
  statement {
    sid       = "ReadSourceStreams"
    actions   = ["kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"]
    resources = [for s in keys(local.firehose_deliveries) : local.stream_arn[s]]
  }
  statement {
    sid       = "LocateTheLake"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "WriteArchivePrefixes"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [for p in values(local.firehose_prefix) : "${aws_s3_bucket.lake.arn}/${p}*"]
  }
  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.btcpipe.arn]
  }
  statement {
    sid       = "LogDeliveryErrors"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "btcpipe-${var.environment}-firehose"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

resource "aws_kinesis_firehose_delivery_stream" "archive" {
  #checkov:skip=CKV_AWS_240:a delivery stream with a Kinesis source cannot have its own SSE; the source stream is KMS-encrypted and the objects are SSE-KMS (kms_key_arn)
  #checkov:skip=CKV_AWS_241:as above
  for_each    = local.firehose_deliveries
  name        = "btcpipe-${var.environment}-archive-${each.key}"
  destination = "extended_s3"

  kinesis_source_configuration {
    kinesis_stream_arn = local.stream_arn[each.key]
    role_arn           = aws_iam_role.firehose.arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = aws_s3_bucket.lake.arn
    prefix              = "${local.firehose_prefix[each.key]}date=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    error_output_prefix = "tmp/firehose-errors/stream=${each.key}/!{firehose:error-output-type}/date=!{timestamp:yyyy-MM-dd}/"
    buffering_size      = var.firehose_buffer_mib
    buffering_interval  = var.firehose_buffer_s
    compression_format  = "GZIP"
    kms_key_arn         = aws_kms_key.btcpipe.arn

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose[each.key].name
    }
  }
}
