# One Fargate service per component, the same image, the service chosen by its command.
locals {
  emf_namespace = "btcpipe"
  components = {
    ingestor  = { command = "ingest", cpu = 512, memory = 1024, secrets = { BTCPIPE_BINANCE_API_KEY = var.binance_api_key_secret_arn } }
    processor = { command = "process --positions-dir /var/lib/btcpipe/positions", cpu = 512, memory = 1024, secrets = { BTCPIPE_REDIS_PASSWORD = aws_secretsmanager_secret.redis_auth.arn } }
    inference = { command = "infer", cpu = 512, memory = 1024, secrets = { BTCPIPE_REDIS_PASSWORD = aws_secretsmanager_secret.redis_auth.arn } }
  }
  # btcpipe/config.py through its BTCPIPE__SECTION__KEY overrides; EMF output (btcpipe/emf.py) feeds the alarms.
  environment = {
    BTCPIPE_LOG_FORMAT                 = "json"
    BTCPIPE_EMF                        = "1"
    BTCPIPE_EMF_NAMESPACE              = local.emf_namespace
    BTCPIPE_EMF_INTERVAL_S             = "60"
    BTCPIPE__SYMBOLS                   = join(",", var.symbols)
    BTCPIPE__EXCHANGE__KIND            = "binance"
    BTCPIPE__EXCHANGE__API_KEY_ENV     = "BTCPIPE_BINANCE_API_KEY"
    BTCPIPE__LAKE__URI                 = "s3://${aws_s3_bucket.lake.bucket}"
    BTCPIPE__BUS__KIND                 = "kinesis"
    BTCPIPE__BUS__REGION               = var.region
    BTCPIPE__BUS__STREAM_PREFIX        = "btcpipe-${var.environment}-"
    BTCPIPE__STORE__KIND               = "redis"
    BTCPIPE__STORE__REDIS_URL          = "redis://${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379/0"
    BTCPIPE__STORE__REDIS_PASSWORD_ENV = "BTCPIPE_REDIS_PASSWORD"
    BTCPIPE__STORE__TLS                = "true"
    BTCPIPE__METRICS__HOST             = "0.0.0.0"
    BTCPIPE__METRICS__PORT             = "9100"
  }
}

resource "aws_ecs_cluster" "btcpipe" {
  name = "btcpipe-${var.environment}"
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = local.components
  name              = "/btcpipe/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.btcpipe.arn
}

resource "aws_security_group" "tasks" {
  name        = "btcpipe-${var.environment}-tasks"
  description = "btcpipe tasks: no inbound; outbound HTTPS/WSS (AWS APIs, Binance) and Redis"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "AWS APIs (Kinesis, S3, Secrets Manager, Logs) and Binance REST"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_binance_streams" {
  security_group_id = aws_security_group.tasks.id
  description       = "Binance WebSocket market streams (wss on 9443)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 9443
  to_port           = 9443
}

resource "aws_vpc_security_group_egress_rule" "tasks_redis" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "The online store"
  referenced_security_group_id = aws_security_group.redis.id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.components
  family                   = "btcpipe-${var.environment}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  # The processor's consumer positions (Kinesis bus). Task storage is ephemeral: a replaced task starts from the
  # earliest retained record (--start earliest), so it re-reads rather than skips.
  volume {
    name = "positions"
  }

  container_definitions = jsonencode([
    {
      name                   = each.key
      image                  = var.image
      command                = split(" ", each.value.command)
      essential              = true
      # btcpipe exits within [shutdown] grace_s (5 s) of SIGTERM, buffers flushed; ECS sends SIGKILL after this.
      stopTimeout            = 30
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      privileged             = false
      environment            = [for k, v in local.environment : { name = k, value = v }]
      secrets                = [for k, v in each.value.secrets : { name = k, valueFrom = v }]
      portMappings           = [{ containerPort = 9100, protocol = "tcp" }]
      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
        { sourceVolume = "positions", containerPath = "/var/lib/btcpipe/positions", readOnly = false },
      ]
      linuxParameters        = { initProcessEnabled = true, capabilities = { drop = ["ALL"] } }
      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=2)"]
        interval    = 10
        timeout     = 3
        retries     = 3
        startPeriod = 60
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = each.key
        }
      }
    }
  ])
}

resource "aws_ecs_service" "service" {
  for_each        = local.components
  name            = each.key
  cluster         = aws_ecs_cluster.btcpipe.id
  task_definition = aws_ecs_task_definition.service[each.key].arn
  launch_type     = "FARGATE"
  desired_count   = 1
  # One writer per stream: stop the old task before the new one starts (never two at once).
  deployment_maximum_percent         = 100
  deployment_minimum_healthy_percent = 0
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
}
