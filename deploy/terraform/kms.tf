# One customer-managed key encrypts the streams, the lake, Redis at rest, the Redis auth secret and the logs.
resource "aws_kms_key" "btcpipe" {
  description             = "btcpipe ${var.environment}: Kinesis, Firehose, S3, ElastiCache, Secrets Manager, CloudWatch Logs, SNS"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "btcpipe" {
  name          = "alias/btcpipe-${var.environment}"
  target_key_id = aws_kms_key.btcpipe.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:a key policy's Resource "*" means this key itself; the account root must administer it
  #checkov:skip=CKV_AWS_111:as above: key policies are scoped to their key, "*" is the only valid resource
  #checkov:skip=CKV_AWS_356:as above
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  # Alarms publish to the KMS-encrypted alert topics (sns.tf); SNS needs the key on CloudWatch's behalf.
  statement {
    sid       = "CloudWatchAlarmsToEncryptedTopics"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
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
  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/btcpipe/${var.environment}/*"]
    }
  }
}
