variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Name of this deployment (prod, staging); part of every resource name."
  type        = string
  default     = "prod"
}

variable "vpc_id" {
  description = "VPC the services and Redis run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with NAT egress to Binance) for the tasks and Redis; at least two AZs."
  type        = list(string)
}

variable "image" {
  description = "The btcpipe image (deploy/Dockerfile), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/btcpipe:0.1.0."
  type        = string
}

variable "binance_api_key_secret_arn" {
  description = "Secrets Manager secret holding the Binance API key (SBE market streams need one)."
  type        = string
}

variable "symbols" {
  description = "Symbols to ingest and predict."
  type        = list(string)
  default     = ["BTCUSDT"]
}

variable "alarm_topic_arn" {
  description = "SNS topic that receives CloudWatch alarm notifications (empty: alarms only change state)."
  type        = string
  default     = ""
}

variable "redis_node_type" {
  description = "ElastiCache node type of the online store."
  type        = string
  default     = "cache.t4g.small"
}

variable "log_retention_days" {
  description = "CloudWatch log retention of the services' JSON logs (and their EMF metrics)."
  type        = number
  default     = 365
}
