# The online store: Redis with TLS in transit, KMS at rest, AUTH token kept in Secrets Manager.
resource "random_password" "redis_auth" {
  length  = 64
  special = false # ElastiCache AUTH tokens allow only printable characters without @, ", /
}

resource "aws_secretsmanager_secret" "redis_auth" {
  #checkov:skip=CKV2_AWS_57:rotating an ElastiCache AUTH token needs a coordinated ROTATE/SET; done by the runbook, not a Lambda
  name       = "btcpipe/${var.environment}/redis-auth-token"
  kms_key_id = aws_kms_key.btcpipe.arn
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
}

resource "aws_elasticache_subnet_group" "redis" {
  name       = "btcpipe-${var.environment}-redis"
  subnet_ids = var.private_subnet_ids
}

resource "aws_security_group" "redis" {
  name        = "btcpipe-${var.environment}-redis"
  description = "btcpipe online store: Redis from the btcpipe tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis (TLS) from the btcpipe tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_cloudwatch_log_group" "redis_slow" {
  name              = "/btcpipe/${var.environment}/redis/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.btcpipe.arn
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id       = "btcpipe-${var.environment}"
  description                = "btcpipe online store (latest 1-s feature rows)"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  port                       = 6379
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.btcpipe.arn
  transit_encryption_enabled = true
  auth_token                 = aws_secretsmanager_secret_version.redis_auth.secret_string
  auto_minor_version_upgrade = true
  snapshot_retention_limit   = 7
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.redis_slow.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }
}
