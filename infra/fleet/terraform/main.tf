# spotgrace fleet companion: EventBridge rules, the function, a least-privilege role,
# a log group with retention, the SNS topic, the dead-letter queue and the state table.
# The event patterns are the same as spotgrace.fleet's (the tests compare them).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  ecs_prefix  = "arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  cluster_arn = "${local.ecs_prefix}:cluster/${var.cluster_name}"
  managed_service_arns = [
    for s in concat(var.service_names, values(var.fallback_twins)) :
    "${local.ecs_prefix}:service/${var.cluster_name}/${s}"
  ]

  interruption_pattern = {
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      "$or" = [
        { stopCode = ["TerminationNotice", "SpotInterruption"] },
        { stoppedReason = [{ prefix = "Your Spot Task was interrupted" }] },
      ]
      clusterArn = [local.cluster_arn]
    }
  }

  placement_failure_pattern = {
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Service Action"]
    detail = {
      eventName  = ["SERVICE_TASK_PLACEMENT_FAILURE"]
      reason     = ["RESOURCE:FARGATE"]
      clusterArn = [local.cluster_arn]
    }
  }

  steady_state_pattern = {
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Service Action"]
    detail = {
      eventName  = ["SERVICE_STEADY_STATE"]
      clusterArn = [local.cluster_arn]
    }
  }

  rules = {
    interruption      = { pattern = jsonencode(local.interruption_pattern), schedule = null }
    placement_failure = { pattern = jsonencode(local.placement_failure_pattern), schedule = null }
    steady_state      = { pattern = jsonencode(local.steady_state_pattern), schedule = null }
    tick              = { pattern = null, schedule = "rate(5 minutes)" }
  }
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-alerts"
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "RulesDeliverUndeliverableEvents"
      Effect    = "Allow"
      Principal = { Service = "events.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.dlq.arn
      Condition = { ArnEquals = { "aws:SourceArn" = [for r in aws_cloudwatch_event_rule.fleet : r.arn] } }
    }]
  })
}

resource "aws_dynamodb_table" "state" {
  name         = "${var.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  attribute {
    name = "pk"
    type = "S"
  }
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }
  server_side_encryption {
    enabled = true
  }
  point_in_time_recovery {
    enabled = true
  }
}

resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_iam_role" "function" {
  name = "${var.name}-function"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "function" {
  name = "spotgrace-fleet"
  role = aws_iam_role.function.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadAndScaleTheNamedServices"
        Effect   = "Allow"
        Action   = ["ecs:DescribeServices", "ecs:UpdateService", "ecs:ListTagsForResource"]
        Resource = local.managed_service_arns
      },
      {
        Sid      = "ReadTheClustersTasks"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTasks"]
        Resource = "${local.ecs_prefix}:task/${var.cluster_name}/*"
      },
      {
        Sid      = "Alert"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = aws_sns_topic.alerts.arn
      },
      {
        Sid      = "DeadLetter"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = aws_sqs_queue.dlq.arn
      },
      {
        Sid      = "State"
        Effect   = "Allow"
        Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
        Resource = aws_dynamodb_table.state.arn
      },
      {
        Sid      = "Logs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.function.arn}:*"
      },
    ]
  })
}

resource "aws_lambda_function" "fleet" {
  function_name    = var.name
  description      = "spotgrace fleet companion for ${var.cluster_name}"
  runtime          = "python3.12"
  handler          = "spotgrace.fleet.handler"
  filename         = var.code_zip
  source_code_hash = filebase64sha256(var.code_zip)
  role             = aws_iam_role.function.arn
  timeout          = 60
  memory_size      = 256
  environment {
    variables = {
      SPOTGRACE_FLEET_SERVICES   = join(",", [for s in var.service_names : "${var.cluster_name}/${s}"])
      SPOTGRACE_FLEET_ACTION     = var.action
      SPOTGRACE_FLEET_FALLBACK   = join(",", [for s, t in var.fallback_twins : "${var.cluster_name}/${s}=${t}"])
      SPOTGRACE_FLEET_HOLD_OFF   = tostring(var.hold_off_seconds)
      SPOTGRACE_FLEET_TOPIC_ARN  = aws_sns_topic.alerts.arn
      SPOTGRACE_FLEET_TABLE      = aws_dynamodb_table.state.name
      SPOTGRACE_FLEET_DLQ_URL    = aws_sqs_queue.dlq.id
      SPOTGRACE_FLEET_ACCOUNT_ID = data.aws_caller_identity.current.account_id
    }
  }
  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }
  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function.name
  }
  # CreateFunction checks that the role may SendMessage to the dead-letter queue:
  # without this the function can be created before the role's policy (first apply fails).
  depends_on = [aws_iam_role_policy.function]
}

resource "aws_lambda_function_event_invoke_config" "fleet" {
  function_name                = aws_lambda_function.fleet.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 3600
}

resource "aws_cloudwatch_event_rule" "fleet" {
  for_each            = local.rules
  name                = "${var.name}-${each.key}"
  event_pattern       = each.value.pattern
  schedule_expression = each.value.schedule
}

resource "aws_cloudwatch_event_target" "fleet" {
  for_each = local.rules
  rule     = aws_cloudwatch_event_rule.fleet[each.key].name
  arn      = aws_lambda_function.fleet.arn
  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
  retry_policy {
    maximum_retry_attempts       = 10
    maximum_event_age_in_seconds = 3600
  }
}

resource "aws_lambda_permission" "events" {
  for_each      = local.rules
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fleet.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.fleet[each.key].arn
}
