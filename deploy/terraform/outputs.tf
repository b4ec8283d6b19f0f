output "lake_uri" {
  description = "BTCPIPE__LAKE__URI for anything that reads the lake (training, lake check)."
  value       = "s3://${aws_s3_bucket.lake.bucket}"
}

output "stream_names" {
  description = "Kinesis stream of each bus stream."
  value       = { for name, s in aws_kinesis_stream.bus : name => s.name }
}

output "redis_primary_endpoint" {
  description = "Online store endpoint (TLS, AUTH token in the redis_auth secret)."
  value       = aws_elasticache_replication_group.redis.primary_endpoint_address
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the Redis AUTH token."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "ecs_cluster" {
  description = "ECS cluster running the ingestor, processor and inference services."
  value       = aws_ecs_cluster.btcpipe.name
}

output "alert_topic_arns" {
  description = "SNS topic per severity that the CloudWatch alarms notify (subscribe more receivers here)."
  value       = { for s, t in aws_sns_topic.alerts : s => t.arn }
}

output "bus_archive_prefixes" {
  description = "Lake prefix each Firehose delivery stream writes the bus records to."
  value       = local.firehose_prefix
}
