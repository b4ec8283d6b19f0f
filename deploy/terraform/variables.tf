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

variable "pagerduty_endpoint_url" {
  description = "PagerDuty CloudWatch integration URL (https://events.pagerduty.com/integration/<key>/enqueue) subscribed to the critical topic; empty: no page."
  type        = string
  default     = ""
  sensitive   = true
}

variable "slack_workspace_id" {
  description = "Slack workspace (team) id authorised in AWS Chatbot; with slack_channel_id, every alert topic goes to that channel. Empty: no Slack."
  type        = string
  default     = ""
}

variable "slack_channel_id" {
  description = "Slack channel id (not its name) that AWS Chatbot posts the alarms to."
  type        = string
  default     = ""
}

variable "firehose_buffer_mib" {
  description = "Firehose delivers a bus archive object when this many MiB are buffered (or after firehose_buffer_s)."
  type        = number
  default     = 64
}

variable "firehose_buffer_s" {
  description = "Firehose delivers a bus archive object at least this often, in seconds (60-900)."
  type        = number
  default     = 300
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
