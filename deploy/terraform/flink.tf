# Amazon Managed Service for Apache Flink: the live features as a PyFlink application (btcpipe.engines.flink), an
# alternative to the processor's Fargate service when many symbols or consumers outgrow it (docs/SCALE.md).
# Off by default (flink_enabled). Documented, not run here: Managed Flink itself, the Kinesis connector jar the
# deployer packages into the code zip (org.apache.flink:flink-connector-kinesis, the release matching the runtime),
# numpy/btcpipe vendored into the zip, S3 checkpoints (Managed Flink keeps them) and snapshot-based upgrades.
variable "flink_enabled" {
  description = "Run the live features on Managed Flink (then scale the processor service to 0)."
  type        = bool
  default     = false
}

variable "flink_runtime" {
  description = "Managed Flink runtime; the job is tested locally on Flink 2.3 with the DataStream API only."
  type        = string
  default     = "FLINK-1_20"
}

variable "flink_code_key" {
  description = "Key of the application zip in the lake bucket (btcpipe + numpy + the Kinesis connector jar)."
  type        = string
  default     = "apps/flink/btcpipe-flink.zip"
}

variable "flink_parallelism" {
  description = "Parallelism of the keyed feature operator (symbols spread over it by key)."
  type        = number
  default     = 2
}

resource "aws_cloudwatch_log_group" "flink" {
  name              = "/btcpipe/${var.environment}/flink"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.btcpipe.arn
}

resource "aws_cloudwatch_log_stream" "flink" {
  name           = "features"
  log_group_name = aws_cloudwatch_log_group.flink.name
}

data "aws_iam_policy_document" "flink_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["kinesisanalytics.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flink" {
  name               = "btcpipe-${var.environment}-flink"
  assume_role_policy = data.aws_iam_policy_document.flink_assume.json
}

# Like the processor's task role: read the market streams and heartbeats, put features-1s; read the code zip.
data "aws_iam_policy_document" "flink" {
  statement {
    actions = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetShardIterator",
    "kinesis:GetRecords", "kinesis:ListShards", "kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"]
    resources = [for s in local.market_streams : aws_kinesis_stream.bus[s].arn]
  }
  statement {
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
    resources = [aws_kinesis_stream.bus["features-1s"].arn]
  }
  statement {
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.lake.arn}/${var.flink_code_key}"]
  }
  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.btcpipe.arn]
  }
  statement {
    actions   = ["logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flink.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flink" {
  name   = "btcpipe-flink"
  role   = aws_iam_role.flink.id
  policy = data.aws_iam_policy_document.flink.json
}

resource "aws_kinesisanalyticsv2_application" "features" {
  count                  = var.flink_enabled ? 1 : 0
  name                   = "btcpipe-${var.environment}-features"
  runtime_environment    = var.flink_runtime
  service_execution_role = aws_iam_role.flink.arn

  application_configuration {
    application_code_configuration {
      code_content_type = "ZIPFILE"
      code_content {
        s3_content_location {
          bucket_arn = aws_s3_bucket.lake.arn
          file_key   = var.flink_code_key
        }
      }
    }

    environment_properties {
      # Managed Flink's PyFlink entry: the job module and the connector jar inside the zip.
      property_group {
        property_group_id = "kinesis.analytics.flink.run.options"
        property_map = {
          python  = "btcpipe/engines/flink/job.py"
          jarfile = "lib/flink-connector-kinesis.jar"
        }
      }
      property_group {
        property_group_id = "btcpipe"
        property_map = {
          trade_stream          = aws_kinesis_stream.bus["market-sbe-trade"].name
          best_bid_ask_stream   = aws_kinesis_stream.bus["market-sbe-bestbidask"].name
          heartbeat_stream      = aws_kinesis_stream.bus["market-heartbeat"].name
          features_stream       = aws_kinesis_stream.bus["features-1s"].name
          out_of_orderness_ms   = "200"
          params_s3_uri         = "s3://${aws_s3_bucket.lake.bucket}/models/production/schema_v1.json"
        }
      }
    }

    flink_application_configuration {
      checkpoint_configuration {
        configuration_type            = "CUSTOM"
        checkpointing_enabled         = true
        checkpoint_interval           = 10000
        min_pause_between_checkpoints = 5000
      }
      monitoring_configuration {
        configuration_type = "CUSTOM"
        log_level          = "WARN"
        metrics_level      = "OPERATOR"
      }
      parallelism_configuration {
        configuration_type   = "CUSTOM"
        parallelism          = var.flink_parallelism
        parallelism_per_kpu  = 1
        auto_scaling_enabled = false
      }
    }

    # Upgrades restore the symbol states from the latest snapshot (the state is a versioned JSON snapshot).
    application_snapshot_configuration {
      snapshots_enabled = true
    }
  }

  cloudwatch_logging_options {
    log_stream_arn = aws_cloudwatch_log_stream.flink.arn
  }
}
