output "alert_topic_arn" {
  description = "Subscribe your pager/e-mail here"
  value       = aws_sns_topic.alerts.arn
}

output "dead_letter_queue_url" {
  description = "Events that still failed; redrive with `spotgrace fleet handle`"
  value       = aws_sqs_queue.dlq.id
}

output "function_name" {
  value = aws_lambda_function.fleet.function_name
}

output "state_table_name" {
  value = aws_dynamodb_table.state.name
}
