# btcpipe on AWS: Kinesis bus, ElastiCache online store, S3 lake, ECS Fargate services, CloudWatch alarms routed
# through SNS (Slack, PagerDuty), Firehose archiving the bus to the lake.
# terraform init && terraform apply -var-file=prod.tfvars   (see docs/OPERATIONS.md)
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80" # aws_chatbot_slack_channel_configuration needs 5.77+
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "btcpipe"
      env     = var.environment
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
