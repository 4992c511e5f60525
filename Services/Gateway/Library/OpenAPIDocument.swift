/// The OpenAPI 3 description of the gateway, served at `/openapi.json`. Tests check that every
/// route the gateway registers is described here.
enum OpenAPIDocument {
  static let json = #"""
    {
      "openapi": "3.0.3",
      "info": {
        "title": "Herald API",
        "version": "1.0.0",
        "description": "Outbound messaging: subscribers and consent, campaigns, delivery, sync and verification. Every route but /health and the signed provider webhooks (/v1/webhooks/{provider}) needs an API key (Authorization: Bearer <key>). Errors are application/problem+json. POST and PATCH under /v1 accept an Idempotency-Key header (1-255 printable ASCII characters): a retry with the same key and request gets the first answer again (Idempotent-Replayed: true) for 24 hours; the same key with another request is a 422."
      },
      "servers": [{"url": "/"}],
      "security": [{"apiKey": []}],
      "components": {
        "securitySchemes": {
          "apiKey": {"type": "http", "scheme": "bearer", "description": "A Herald API key (hrld_...)."}
        },
        "responses": {
          "Problem": {
            "description": "An error, naming the failing field when there is one.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
          }
        },
        "schemas": {
          "VerificationIssue": {"type": "object", "properties": {"fingerprint": {"type": "string"}, "severity": {"type": "string", "enum": ["SEVERITY_CRITICAL", "SEVERITY_HIGH", "SEVERITY_MEDIUM", "SEVERITY_LOW"]}, "category": {"type": "string", "enum": ["CATEGORY_DATABASE", "CATEGORY_SYNC", "CATEGORY_SERVICE", "CATEGORY_DATA"]}, "check": {"type": "string"}, "description": {"type": "string"}, "affected_object": {"type": "string"}, "count": {"type": "string"}, "sample_keys": {"type": "array", "items": {"type": "string"}}, "suggested_repair": {"type": "string"}, "auto_repairable": {"type": "boolean"}, "risk": {"type": "string"}, "first_seen_at": {"type": "string", "format": "date-time"}, "last_seen_at": {"type": "string", "format": "date-time"}, "occurrences": {"type": "string"}, "open": {"type": "boolean"}, "component": {"type": "string"}, "alerted_at": {"type": "string", "format": "date-time"}}},
          "VerificationReport": {"type": "object", "properties": {"id": {"type": "string"}, "kind": {"type": "string"}, "started_at": {"type": "string", "format": "date-time"}, "finished_at": {"type": "string", "format": "date-time"}, "overall_status": {"type": "string", "enum": ["STATUS_OK", "STATUS_WARNING", "STATUS_CRITICAL"]}, "summary": {"type": "string"}, "components": {"type": "array", "items": {"type": "object", "properties": {"component": {"type": "string"}, "status": {"type": "string", "enum": ["STATUS_OK", "STATUS_WARNING", "STATUS_CRITICAL"]}, "issues": {"type": "integer"}, "duration_ms": {"type": "string"}, "note": {"type": "string"}}}}, "issues": {"type": "array", "items": {"$ref": "#/components/schemas/VerificationIssue"}}}},
          "Repair": {"type": "object", "properties": {"id": {"type": "string"}, "fingerprint": {"type": "string"}, "check": {"type": "string"}, "affected_object": {"type": "string"}, "status": {"type": "string", "enum": ["REPAIR_STATUS_PROPOSED", "REPAIR_STATUS_PENDING_REVIEW", "REPAIR_STATUS_APPROVED", "REPAIR_STATUS_REJECTED", "REPAIR_STATUS_APPLIED", "REPAIR_STATUS_ROLLED_BACK"]}, "needs_review": {"type": "boolean"}, "risk": {"type": "string"}, "description": {"type": "string"}, "statements": {"type": "array", "items": {"type": "string"}}, "backup_query": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}, "requested_by": {"type": "string"}, "reviewed_by": {"type": "string"}, "reviewed_at": {"type": "string", "format": "date-time"}, "review_note": {"type": "string"}, "runs": {"type": "array", "items": {"type": "object", "properties": {"dry_run": {"type": "boolean"}, "at": {"type": "string", "format": "date-time"}, "by": {"type": "string"}, "rows": {"type": "array", "items": {"type": "string"}}, "backup_table": {"type": "string"}, "backed_up_rows": {"type": "string"}, "issue_remains": {"type": "boolean"}, "error": {"type": "string"}, "committed": {"type": "boolean"}}}}}},
          "SyncJob": {"type": "object", "required": ["name", "base_id", "table_id", "token_env", "direction", "mappings"], "properties": {"id": {"type": "string", "readOnly": true}, "name": {"type": "string"}, "base_id": {"type": "string"}, "table_id": {"type": "string"}, "token_env": {"type": "string", "description": "Name of the environment variable holding the token."}, "direction": {"type": "string", "enum": ["DIRECTION_PULL", "DIRECTION_PUSH", "DIRECTION_BOTH"]}, "mappings": {"type": "array", "items": {"type": "object", "properties": {"external_field": {"type": "string"}, "subscriber_field": {"type": "string"}, "conflict_policy": {"type": "string", "enum": ["CONFLICT_POLICY_LOCAL_WINS", "CONFLICT_POLICY_REMOTE_WINS", "CONFLICT_POLICY_LAST_WRITER_WINS", "CONFLICT_POLICY_MANUAL"]}}}}, "modified_field": {"type": "string", "description": "The table's last-modified field; empty: every run reads the whole table."}, "overlap_seconds": {"type": "integer"}, "default_policy": {"type": "string", "enum": ["CONFLICT_POLICY_LOCAL_WINS", "CONFLICT_POLICY_REMOTE_WINS", "CONFLICT_POLICY_LAST_WRITER_WINS", "CONFLICT_POLICY_MANUAL"]}, "schedule_seconds": {"type": "integer", "description": "0: on demand only."}, "reconcile_seconds": {"type": "integer"}, "max_delete_percent": {"type": "integer"}, "cursor": {"type": "string", "readOnly": true}, "last_full_sync_at": {"type": "string", "format": "date-time", "readOnly": true}, "created_at": {"type": "string", "format": "date-time", "readOnly": true}}},
          "SyncRun": {"type": "object", "properties": {"id": {"type": "string"}, "job_id": {"type": "string"}, "status": {"type": "string", "enum": ["RUN_STATUS_RUNNING", "RUN_STATUS_SUCCEEDED", "RUN_STATUS_FAILED", "RUN_STATUS_ABORTED", "RUN_STATUS_INTERRUPTED"]}, "phase": {"type": "string"}, "dry_run": {"type": "boolean"}, "full": {"type": "boolean"}, "started_at": {"type": "string", "format": "date-time"}, "finished_at": {"type": "string", "format": "date-time"}, "cursor_before": {"type": "string"}, "cursor_after": {"type": "string"}, "resumed_from": {"type": "string"}, "counts": {"type": "object", "properties": {"records_read": {"type": "string"}, "created": {"type": "string"}, "updated": {"type": "string"}, "unchanged": {"type": "string"}, "duplicates": {"type": "string"}, "soft_deleted": {"type": "string"}, "pushed": {"type": "string"}, "conflicts": {"type": "string"}, "errors": {"type": "string"}, "api_calls": {"type": "string"}, "rate_limited": {"type": "string"}, "cursor_restarts": {"type": "string"}}}, "errors": {"type": "array", "items": {"type": "object", "properties": {"record_id": {"type": "string"}, "field": {"type": "string"}, "message": {"type": "string"}}}}, "error": {"type": "string"}, "planned": {"type": "array", "items": {"type": "object", "properties": {"record_id": {"type": "string"}, "action": {"type": "string"}, "subscriber_id": {"type": "string"}, "fields": {"type": "array", "items": {"type": "string"}}}}}}},
          "SyncConflict": {"type": "object", "properties": {"id": {"type": "string"}, "job_id": {"type": "string"}, "run_id": {"type": "string"}, "record_id": {"type": "string"}, "subscriber_id": {"type": "string"}, "subscriber_field": {"type": "string"}, "base_json": {"type": "string"}, "local_json": {"type": "string"}, "remote_json": {"type": "string"}, "policy": {"type": "string", "enum": ["CONFLICT_POLICY_LOCAL_WINS", "CONFLICT_POLICY_REMOTE_WINS", "CONFLICT_POLICY_LAST_WRITER_WINS", "CONFLICT_POLICY_MANUAL"]}, "resolution": {"type": "string", "enum": ["local", "remote", "pending"]}, "created_at": {"type": "string", "format": "date-time"}, "resolved_at": {"type": "string", "format": "date-time"}}},
          "RateLimit": {"type": "object", "properties": {"key": {"type": "string", "readOnly": true}, "descriptors": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}}}}, "requests_per_unit": {"type": "string"}, "unit": {"type": "string", "enum": ["UNIT_SECOND", "UNIT_MINUTE", "UNIT_HOUR", "UNIT_DAY"]}, "algorithm": {"type": "string", "enum": ["ALGORITHM_TOKEN_BUCKET", "ALGORITHM_SLIDING_WINDOW", "ALGORITHM_FIXED_WINDOW"]}, "burst": {"type": "string"}, "warmup": {"type": "object", "properties": {"start_date": {"type": "string", "format": "date"}, "daily_volumes": {"type": "array", "items": {"type": "string"}}}}, "updated_at": {"type": "string", "format": "date-time", "readOnly": true}}},
          "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
              "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
              "detail": {"type": "string"}, "field": {"type": "string"}, "instance": {"type": "string"}
            }
          },
          "ServiceHealth": {
            "type": "object",
            "required": ["name", "address", "status"],
            "properties": {
              "name": {"type": "string"}, "address": {"type": "string"},
              "status": {"type": "string", "enum": ["SERVING", "NOT_SERVING", "UNKNOWN", "UNREACHABLE"]},
              "latency_ms": {"type": "number"}, "error": {"type": "string"}
            }
          },
          "SystemStatus": {
            "type": "object",
            "required": ["status", "degraded", "services", "checked_at"],
            "properties": {
              "status": {"type": "string", "enum": ["ok", "degraded"]},
              "degraded": {"type": "array", "items": {"type": "string"}},
              "services": {"type": "array", "items": {"$ref": "#/components/schemas/ServiceHealth"}},
              "delivery": {"type": "object", "description": "Queue depth and provider breakers, as the delivery service reports them (absent with an error when it does not answer).", "properties": {
                "queue": {"type": "object", "additionalProperties": {"type": "integer"}}, "ambiguous": {"type": "integer"},
                "providers": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "channel": {"type": "string"}, "breaker_state": {"type": "string"}, "error_rate": {"type": "number"}, "latency_ms": {"type": "number"}, "last_error": {"type": "string"}}}},
                "error": {"type": "string"}}},
              "rate_limit": {"type": "object", "description": "Rate-limit replicas (id@address), how many limits and live counters (and how many are used up), members that did not answer.", "properties": {
                "members": {"type": "array", "items": {"type": "string"}}, "limits": {"type": "integer"}, "counters": {"type": "integer"}, "over_limit": {"type": "integer"},
                "unreachable": {"type": "array", "items": {"type": "string"}}, "error": {"type": "string"}}},
              "checked_at": {"type": "string", "format": "date-time"}
            }
          },
          "Provider": {
            "type": "object",
            "description": "proto3 JSON of herald.delivery.v1.Provider; int64 values are strings.",
            "required": ["name", "channel"],
            "properties": {
              "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
              "channel": {"type": "string", "enum": ["CHANNEL_EMAIL", "CHANNEL_SMS", "CHANNEL_PUSH", "CHANNEL_WHATSAPP"]},
              "kind": {"type": "string", "enum": ["PROVIDER_KIND_SMTP", "PROVIDER_KIND_HTTP_SMS", "PROVIDER_KIND_WEBHOOK"]},
              "priority": {"type": "integer"}, "cost_cents": {"type": "string"}, "disabled": {"type": "boolean"},
              "sending_identity": {"type": "string"}, "webhook_secret": {"type": "string"},
              "smtp": {"type": "object", "properties": {"host": {"type": "string"}, "port": {"type": "integer"}, "username": {"type": "string"}, "password": {"type": "string"}, "tls": {"type": "string", "enum": ["TLS_MODE_STARTTLS_IF_OFFERED", "TLS_MODE_STARTTLS_REQUIRED", "TLS_MODE_NONE"]}, "from_address": {"type": "string"}, "helo_name": {"type": "string"}, "max_connections": {"type": "integer"}, "trusted_ca_pem": {"type": "string"}}},
              "http_sms": {"type": "object", "properties": {"url": {"type": "string"}, "username": {"type": "string"}, "password": {"type": "string"}, "bearer_token": {"type": "string"}, "from": {"type": "string"}, "form_encoded": {"type": "boolean"}, "message_id_field": {"type": "string"}}},
              "webhook": {"type": "object", "properties": {"url": {"type": "string"}, "signing_secret": {"type": "string"}}},
              "status": {"type": "object", "readOnly": true, "properties": {"breaker_state": {"type": "string", "enum": ["closed", "open", "half_open"]}, "error_rate": {"type": "number"}, "attempts_in_window": {"type": "string"}, "latency_ms_average": {"type": "number"}, "last_error": {"type": "string"}, "opened_at": {"type": "string", "format": "date-time"}, "sent": {"type": "string"}, "failed": {"type": "string"}}}
            }
          },
          "APIKey": {
            "type": "object",
            "required": ["id", "name", "prefix", "scopes", "created_at"],
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "prefix": {"type": "string"},
              "scopes": {"type": "array", "items": {"type": "string"}},
              "created_at": {"type": "string", "format": "date-time"},
              "last_used_at": {"type": "string", "format": "date-time"},
              "revoked_at": {"type": "string", "format": "date-time"}
            }
          },
          "CreatedAPIKey": {
            "allOf": [
              {"$ref": "#/components/schemas/APIKey"},
              {"type": "object", "required": ["key"], "properties": {"key": {"type": "string", "description": "Shown once."}}}
            ]
          },
          "Consent": {
            "type": "object",
            "properties": {"subscribed": {"type": "boolean"}, "source": {"type": "string"}}
          },
          "ChannelConsent": {
            "type": "object",
            "properties": {
              "subscribed": {"type": "boolean"}, "source": {"type": "string"},
              "consented_at": {"type": "string", "format": "date-time"},
              "unsubscribed_at": {"type": "string", "format": "date-time"}
            }
          },
          "CreateSubscriber": {
            "type": "object",
            "description": "At least one of email and phone. Consent needs a source.",
            "properties": {
              "email": {"type": "string", "format": "email"},
              "phone": {"type": "string", "description": "E.164, e.g. +14155550123"},
              "first_name": {"type": "string"}, "last_name": {"type": "string"},
              "attributes_json": {"type": "string", "description": "A JSON object, as text."},
              "email_consent": {"$ref": "#/components/schemas/Consent"},
              "sms_consent": {"$ref": "#/components/schemas/Consent"}
            },
            "additionalProperties": false
          },
          "ListCounts": {
            "type": "object",
            "properties": {"subscribers": {"type": "string", "description": "int64 as a string (proto3 JSON)"}, "email_subscribed": {"type": "string"}, "sms_subscribed": {"type": "string"}}
          },
          "SubscriberList": {
            "type": "object",
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "description": {"type": "string"},
              "counts": {"$ref": "#/components/schemas/ListCounts"}, "created_at": {"type": "string", "format": "date-time"}
            }
          },
          "SegmentCondition": {
            "type": "object",
            "required": ["field", "op"],
            "properties": {
              "field": {"type": "string", "description": "email, phone, first_name, last_name, status, email_subscribed, sms_subscribed, created_at, list or attributes.<name>"},
              "op": {"type": "string", "enum": ["eq", "neq", "contains", "gt", "gte", "lt", "lte", "in", "exists", "not_exists"]},
              "value": {"description": "Any JSON value; an array for in; absent for exists and not_exists."}
            }
          },
          "Segment": {
            "type": "object",
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "match": {"type": "string", "enum": ["all", "any"]},
              "conditions": {"type": "array", "items": {"$ref": "#/components/schemas/SegmentCondition"}},
              "counts": {"$ref": "#/components/schemas/ListCounts"}, "created_at": {"type": "string", "format": "date-time"}
            }
          },
          "TemplateVariable": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "default_value": {"type": "string", "description": "Used when the value is missing or empty; without it rendering fails."}}
          },
          "SmsLength": {
            "type": "object",
            "properties": {"encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]}, "units": {"type": "integer"}, "segments": {"type": "integer"}}
          },
          "Template": {
            "type": "object",
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
              "channel": {"type": "string", "enum": ["email", "sms", "push", "whatsapp"]},
              "subject": {"type": "string"}, "body": {"type": "string", "description": "Mustache; every variable used must be declared."},
              "format": {"type": "string", "enum": ["html", "text"]},
              "variables": {"type": "array", "items": {"$ref": "#/components/schemas/TemplateVariable"}},
              "sms_length": {"$ref": "#/components/schemas/SmsLength"}, "created_at": {"type": "string", "format": "date-time"}
            }
          },
          "TemplatePreview": {
            "type": "object",
            "properties": {"subject": {"type": "string"}, "body": {"type": "string"}, "sms_length": {"$ref": "#/components/schemas/SmsLength"}}
          },
          "CampaignVariant": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "template_id": {"type": "string", "format": "uuid"}, "weight": {"type": "integer", "minimum": 1, "maximum": 10000}, "recipients": {"type": "string"}}
          },
          "Campaign": {
            "type": "object",
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
              "channel": {"type": "string", "enum": ["email", "sms", "push", "whatsapp"]},
              "list_id": {"type": "string", "format": "uuid"}, "segment_id": {"type": "string", "format": "uuid"},
              "variants": {"type": "array", "items": {"$ref": "#/components/schemas/CampaignVariant"}},
              "budget_cents": {"type": "string"},
              "status": {"type": "string", "enum": ["draft", "scheduled", "sending", "sent", "paused", "cancelled", "failed"]},
              "status_reason": {"type": "string"}, "send_at": {"type": "string", "format": "date-time"},
              "counts": {"type": "object", "properties": {"audience": {"type": "string"}, "outbox": {"type": "string"}, "relayed": {"type": "string"}, "skipped_no_consent": {"type": "string"}, "failed": {"type": "string"}, "cancelled": {"type": "string"}}},
              "created_at": {"type": "string", "format": "date-time"}, "started_at": {"type": "string", "format": "date-time"}, "finished_at": {"type": "string", "format": "date-time"}
            }
          },
          "Subscriber": {
            "type": "object",
            "properties": {
              "id": {"type": "string", "format": "uuid"}, "email": {"type": "string"}, "phone": {"type": "string"},
              "first_name": {"type": "string"}, "last_name": {"type": "string"}, "attributes_json": {"type": "string"},
              "email_consent": {"$ref": "#/components/schemas/ChannelConsent"},
              "sms_consent": {"$ref": "#/components/schemas/ChannelConsent"},
              "status": {"type": "string"},
              "created_at": {"type": "string", "format": "date-time"},
              "updated_at": {"type": "string", "format": "date-time"}
            }
          }
        }
      },
      "paths": {
        "/health": {
          "get": {
            "summary": "Liveness of the gateway itself.", "security": [],
            "responses": {"200": {"description": "The gateway is up.", "content": {"application/json": {"schema": {"type": "object"}}}}}
          }
        },
        "/system/status": {
          "get": {
            "summary": "gRPC health and latency of every back-end service. Scope: read.",
            "responses": {
              "200": {"description": "Status; 'degraded' names the services not SERVING.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SystemStatus"}}}},
              "401": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/metrics": {
          "get": {
            "summary": "Prometheus metrics. Scope: read.",
            "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"$ref": "#/components/responses/Problem"}}
          }
        },
        "/openapi.json": {
          "get": {
            "summary": "This document. Scope: read.",
            "responses": {"200": {"description": "OpenAPI 3 document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
          }
        },
        "/v1/api-keys": {
          "get": {
            "summary": "List API keys (never the keys themselves). Scope: admin.",
            "responses": {
              "200": {"description": "Keys.", "content": {"application/json": {"schema": {"type": "object", "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/APIKey"}}}}}}},
              "403": {"$ref": "#/components/responses/Problem"}
            }
          },
          "post": {
            "summary": "Create an API key with scopes; the key is in the answer, once. Scope: admin.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "scopes"], "properties": {"name": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string", "enum": ["admin", "read", "subscribers:write", "campaigns:write", "templates:write", "delivery:write", "ratelimit:write", "sync:write", "verification:write"]}}}}}}},
            "responses": {
              "201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedAPIKey"}}}},
              "400": {"$ref": "#/components/responses/Problem"}, "403": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/api-keys/{id}": {
          "delete": {
            "summary": "Revoke an API key. Scope: admin.",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {"204": {"description": "Revoked."}, "404": {"$ref": "#/components/responses/Problem"}}
          }
        },
        "/v1/subscribers": {
          "get": {
            "summary": "Subscribers, oldest first, a page at a time. Scope: read.",
            "parameters": [
              {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
              {"name": "page_token", "in": "query", "schema": {"type": "string"}, "description": "next_page_token of the previous page."}
            ],
            "responses": {
              "200": {"description": "A page.", "content": {"application/json": {"schema": {"type": "object", "properties": {"subscribers": {"type": "array", "items": {"$ref": "#/components/schemas/Subscriber"}}, "next_page_token": {"type": "string", "description": "Absent on the last page."}}}}}},
              "400": {"$ref": "#/components/responses/Problem"}
            }
          },
          "post": {
            "summary": "Create a subscriber. Scope: subscribers:write.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateSubscriber"}}}},
            "responses": {
              "201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscriber"}}}},
              "400": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/subscribers/import": {
          "post": {
            "summary": "Bulk import, streamed: CSV with a header (email, phone, first_name, last_name, email_consent, sms_consent, email_consent_source, sms_consent_source; other columns become attributes) or JSON lines (the CreateSubscriber fields, attributes as an object). Bad rows are reported by line and field; valid rows are kept. An import never re-subscribes someone who unsubscribed. Scope: subscribers:write.",
            "parameters": [
              {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "ndjson"]}, "description": "Instead of the Content-Type."},
              {"name": "on_existing", "in": "query", "schema": {"type": "string", "enum": ["skip", "update"], "default": "skip"}},
              {"name": "consent_source", "in": "query", "schema": {"type": "string", "default": "import"}},
              {"name": "list_id", "in": "query", "schema": {"type": "string", "format": "uuid"}, "description": "Add every imported subscriber to this list."}
            ],
            "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}},
            "responses": {
              "200": {"description": "Counts and the first 1,000 row errors.", "content": {"application/json": {"schema": {"type": "object", "properties": {"created": {"type": "string"}, "updated": {"type": "string"}, "existing": {"type": "string"}, "failed": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object", "properties": {"row": {"type": "string", "description": "Line where the row starts (the CSV header is line 1)."}, "field": {"type": "string"}, "message": {"type": "string"}}}}}}}}},
              "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "415": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/subscribers/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
          "get": {
            "summary": "One subscriber. Scope: read.",
            "responses": {
              "200": {"description": "The subscriber.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscriber"}}}},
              "404": {"$ref": "#/components/responses/Problem"}
            }
          },
          "patch": {
            "summary": "Change the fields given (same checks as create); consent changes are recorded. Scope: subscribers:write.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateSubscriber"}}}},
            "responses": {
              "200": {"description": "The subscriber after the change.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscriber"}}}},
              "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}
            }
          },
          "delete": {
            "summary": "Erase the subscriber's personal data (GDPR); the id and aggregate counts stay. Scope: subscribers:write.",
            "responses": {
              "200": {"description": "The erased subscriber.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscriber"}}}},
              "404": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/subscribers/{id}/unsubscribe": {
          "post": {
            "summary": "Withdraw consent at once for a channel or both. Scope: subscribers:write.",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["channel"], "properties": {"channel": {"type": "string", "enum": ["email", "sms", "all"]}, "source": {"type": "string"}}}}}},
            "responses": {
              "200": {"description": "The subscriber after the change.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscriber"}}}},
              "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/subscribers/{id}/export": {
          "get": {
            "summary": "Everything held about one subscriber, with the consent history (GDPR access). Scope: read.",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
              "200": {"description": "The export.", "content": {"application/json": {"schema": {"type": "object", "properties": {"subscriber": {"$ref": "#/components/schemas/Subscriber"}, "consent_history": {"type": "array", "items": {"type": "object", "properties": {"channel": {"type": "string"}, "subscribed": {"type": "boolean"}, "source": {"type": "string"}, "occurred_at": {"type": "string", "format": "date-time"}}}}, "exported_at": {"type": "string", "format": "date-time"}}}}}},
              "404": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/lists": {
          "get": {"summary": "Lists with live counts. Scope: read.", "responses": {"200": {"description": "Lists.", "content": {"application/json": {"schema": {"type": "object", "properties": {"lists": {"type": "array", "items": {"$ref": "#/components/schemas/SubscriberList"}}}}}}}}},
          "post": {"summary": "Create a list (names are unique). Scope: campaigns:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "description": {"type": "string"}}}}}}, "responses": {"201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriberList"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/lists/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "get": {"summary": "One list with live counts. Scope: read.", "responses": {"200": {"description": "The list.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubscriberList"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/lists/{id}/members": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "Add subscribers (all or none; an unknown id is a 404 naming it). Scope: subscribers:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["subscriber_ids"], "properties": {"subscriber_ids": {"type": "array", "maxItems": 1000, "items": {"type": "string", "format": "uuid"}}}}}}}, "responses": {"200": {"description": "How many changed, and the list.", "content": {"application/json": {"schema": {"type": "object", "properties": {"changed": {"type": "integer"}, "list": {"$ref": "#/components/schemas/SubscriberList"}}}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/lists/{id}/members/remove": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "Remove subscribers from the list. Scope: subscribers:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["subscriber_ids"], "properties": {"subscriber_ids": {"type": "array", "maxItems": 1000, "items": {"type": "string", "format": "uuid"}}}}}}}, "responses": {"200": {"description": "How many changed, and the list.", "content": {"application/json": {"schema": {"type": "object", "properties": {"changed": {"type": "integer"}, "list": {"$ref": "#/components/schemas/SubscriberList"}}}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/segments": {
          "get": {"summary": "Segments with live counts. Scope: read.", "responses": {"200": {"description": "Segments.", "content": {"application/json": {"schema": {"type": "object", "properties": {"segments": {"type": "array", "items": {"$ref": "#/components/schemas/Segment"}}}}}}}}},
          "post": {"summary": "Create a segment: conditions over fields, attributes, consent and list membership, checked at save. Scope: campaigns:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "conditions"], "properties": {"name": {"type": "string"}, "match": {"type": "string", "enum": ["all", "any"], "default": "all"}, "conditions": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/SegmentCondition"}}}}}}}, "responses": {"201": {"description": "Created, with counts.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Segment"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/segments/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "get": {"summary": "One segment with live counts. Scope: read.", "responses": {"200": {"description": "The segment.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Segment"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/templates": {
          "get": {"summary": "Templates. Scope: read.", "responses": {"200": {"description": "Templates.", "content": {"application/json": {"schema": {"type": "object", "properties": {"templates": {"type": "array", "items": {"$ref": "#/components/schemas/Template"}}}}}}}}},
          "post": {"summary": "Create a template; an undeclared variable or a syntax error is a 400 naming it. Scope: templates:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "channel", "body"], "properties": {"name": {"type": "string"}, "channel": {"type": "string", "enum": ["email", "sms", "push", "whatsapp"]}, "subject": {"type": "string", "description": "Required for e-mail."}, "body": {"type": "string"}, "format": {"type": "string", "enum": ["html", "text"]}, "variables": {"type": "array", "items": {"$ref": "#/components/schemas/TemplateVariable"}}}}}}}, "responses": {"201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Template"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/templates/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "get": {"summary": "One template. Scope: read.", "responses": {"200": {"description": "The template.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Template"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/templates/{id}/preview": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "Render for a subscriber and/or given values; a variable without value or default is a 400 naming it. Scope: read.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"subscriber_id": {"type": "string", "format": "uuid"}, "variables": {"type": "object", "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}}}}}}}, "responses": {"200": {"description": "The rendering.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TemplatePreview"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns": {
          "get": {"summary": "Campaigns, optionally in one status. Scope: read.", "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["draft", "scheduled", "sending", "sent", "paused", "cancelled", "failed"]}}], "responses": {"200": {"description": "Campaigns.", "content": {"application/json": {"schema": {"type": "object", "properties": {"campaigns": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}}}}}}}, "400": {"$ref": "#/components/responses/Problem"}}},
          "post": {"summary": "Create a draft campaign: one audience (list_id or segment_id) and template_id or A/B variants with weights. Scope: campaigns:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "channel"], "properties": {"name": {"type": "string"}, "channel": {"type": "string", "enum": ["email", "sms", "push", "whatsapp"]}, "list_id": {"type": "string", "format": "uuid"}, "segment_id": {"type": "string", "format": "uuid"}, "template_id": {"type": "string", "format": "uuid"}, "variants": {"type": "array", "items": {"$ref": "#/components/schemas/CampaignVariant"}}, "budget_cents": {"type": "integer", "minimum": 0}}}}}}, "responses": {"201": {"description": "Created (draft).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "get": {"summary": "One campaign with its counts and per-variant recipients. Scope: read.", "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/analytics": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
          "get": {
            "summary": "Delivery counts and cost for the campaign, per A/B variant and per day (UTC), fed by delivery events. Scope: read.",
            "responses": {
              "200": {"description": "Analytics.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "campaign_id": {"type": "string"}, "totals": {"type": "object", "description": "int64 values are strings (proto3 JSON).", "properties": {"queued": {"type": "string"}, "sent": {"type": "string"}, "delivered": {"type": "string"}, "bounced": {"type": "string"}, "failed": {"type": "string"}, "opened": {"type": "string"}, "clicked": {"type": "string"}, "unsubscribed": {"type": "string"}, "complained": {"type": "string"}, "cost_cents": {"type": "string"}}},
                "variants": {"type": "array", "items": {"type": "object", "properties": {"variant": {"type": "string"}, "counts": {"type": "object", "description": "int64 values are strings (proto3 JSON).", "properties": {"queued": {"type": "string"}, "sent": {"type": "string"}, "delivered": {"type": "string"}, "bounced": {"type": "string"}, "failed": {"type": "string"}, "opened": {"type": "string"}, "clicked": {"type": "string"}, "unsubscribed": {"type": "string"}, "complained": {"type": "string"}, "cost_cents": {"type": "string"}}}}}},
                "days": {"type": "array", "items": {"type": "object", "properties": {"day": {"type": "string", "format": "date"}, "counts": {"type": "object", "description": "int64 values are strings (proto3 JSON).", "properties": {"queued": {"type": "string"}, "sent": {"type": "string"}, "delivered": {"type": "string"}, "bounced": {"type": "string"}, "failed": {"type": "string"}, "opened": {"type": "string"}, "clicked": {"type": "string"}, "unsubscribed": {"type": "string"}, "complained": {"type": "string"}, "cost_cents": {"type": "string"}}}}}},
                "skipped_no_consent": {"type": "string"}, "updated_at": {"type": "string", "format": "date-time"}}}}}},
              "404": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/analytics/engagement": {
          "get": {
            "summary": "Subscribers by engagement score (min(100, round(100 x (opened + 2 x clicked) / (2 x delivered)))), highest first. Scope: read.",
            "parameters": [
              {"name": "min_score", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 100}},
              {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
              {"name": "page_token", "in": "query", "schema": {"type": "string"}}
            ],
            "responses": {
              "200": {"description": "A page.", "content": {"application/json": {"schema": {"type": "object", "properties": {
                "subscribers": {"type": "array", "items": {"type": "object", "properties": {"subscriber_id": {"type": "string"}, "score": {"type": "integer"}, "delivered": {"type": "string"}, "opened": {"type": "string"}, "clicked": {"type": "string"}, "bounced": {"type": "string"}, "complained": {"type": "string"}, "last_engaged_at": {"type": "string", "format": "date-time"}}}},
                "next_page_token": {"type": "string"}}}}}},
              "400": {"$ref": "#/components/responses/Problem"}
            }
          }
        },
        "/v1/campaigns/{id}/schedule": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "draft → scheduled: the scheduler starts it at send_at. Scope: campaigns:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["send_at"], "properties": {"send_at": {"type": "string", "format": "date-time"}}}}}}, "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/send": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "draft | scheduled → sending now: the audience is expanded into the outbox in one transaction; push and whatsapp are refused (no provider for channel). An illegal transition is a 409 naming the current status. Scope: campaigns:write.", "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/pause": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "sending → paused: the relay stops. An illegal transition is a 409 naming the current status. Scope: campaigns:write.", "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/resume": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "paused → sending. An illegal transition is a 409 naming the current status. Scope: campaigns:write.", "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/cancel": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}], "post": {"summary": "draft | scheduled | sending | paused → cancelled: nothing not yet relayed is sent. An illegal transition is a 409 naming the current status. Scope: campaigns:write.", "responses": {"200": {"description": "The campaign.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
                },
        "/v1/providers": {
          "get": {"summary": "Providers per channel in the order they are tried, with breaker state, error rate and latency (as seen by one delivery replica); secrets are redacted. Scope: read.", "responses": {"200": {"description": "Providers.", "content": {"application/json": {"schema": {"type": "object", "properties": {"providers": {"type": "array", "items": {"$ref": "#/components/schemas/Provider"}}}}}}}}}, "post": {"summary": "Creates or replaces a provider by name (proto3 JSON of herald.delivery.v1.Provider: name, channel, priority, cost_cents, sending_identity, webhook_secret and one of smtp, http_sms, webhook). Scope: delivery:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Provider"}}}}, "responses": {"200": {"description": "The provider, secrets redacted.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Provider"}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/providers/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "delete": {"summary": "Deletes the provider named {id}. Scope: delivery:write.", "responses": {"204": {"description": "Deleted."}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/messages": {
          "post": {"summary": "Queues one transactional message (no campaign). The idempotency_key makes a retry harmless: the same key answers the first message with duplicate true. A suppressed recipient is recorded, never sent (suppressed true). Scope: delivery:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["idempotency_key", "channel", "recipient", "body"], "properties": {"idempotency_key": {"type": "string"}, "channel": {"type": "string", "enum": ["CHANNEL_EMAIL", "CHANNEL_SMS", "CHANNEL_PUSH", "CHANNEL_WHATSAPP"]}, "recipient": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}, "not_before": {"type": "string", "format": "date-time"}}}}}}, "responses": {"202": {"description": "Queued.", "content": {"application/json": {"schema": {"type": "object", "properties": {"idempotency_key": {"type": "string"}, "message_id": {"type": "string"}, "duplicate": {"type": "boolean"}, "suppressed": {"type": "boolean"}}}}}}, "400": {"$ref": "#/components/responses/Problem"}}},
          "get": {"summary": "Messages, newest first, by status and campaign; next_cursor continues. Scope: read.", "parameters": [{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["queued", "sending", "sent", "delivered", "bounced", "failed", "suppressed", "expired", "dead", "unknown"]}}, {"name": "campaign_id", "in": "query", "schema": {"type": "string", "format": "uuid"}}, {"name": "cursor", "in": "query", "schema": {"type": "string"}}, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}], "responses": {"200": {"description": "A page of messages.", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/messages/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "One message with every event of its history. Scope: read.", "responses": {"200": {"description": "The message and its events.", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/messages/requeue": {
          "post": {"summary": "Puts dead-lettered or unknown messages back on the queue (attempts reset): give ids, or status dead|unknown for all of them. Scope: delivery:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string", "format": "uuid"}}, "status": {"type": "string", "enum": ["dead", "unknown"]}}}}}}, "responses": {"200": {"description": "How many were requeued.", "content": {"application/json": {"schema": {"type": "object", "properties": {"requeued": {"type": "string"}}}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/dead-letters": {
          "get": {"summary": "Dead-lettered messages (retries exhausted) with their last error, newest first (up to 1,000). Scope: read.", "responses": {"200": {"description": "Messages.", "content": {"application/json": {"schema": {"type": "object"}}}}}}
        },
        "/v1/queue": {
          "get": {"summary": "Queue depth by status, and how many sends were ambiguous (cut off after the provider may have accepted them). Scope: read.", "responses": {"200": {"description": "Counts.", "content": {"application/json": {"schema": {"type": "object", "properties": {"by_status": {"type": "object", "additionalProperties": {"type": "string"}}, "total": {"type": "string"}, "ambiguous": {"type": "string"}}}}}}}}
        },
        "/v1/suppressions": {
          "get": {"summary": "The suppression list (hard bounces, complaints, manual), by address. Scope: read.", "responses": {"200": {"description": "Suppressions.", "content": {"application/json": {"schema": {"type": "object"}}}}}}, "post": {"summary": "Adds an address (reason manual unless given). Enqueue and send both skip suppressed addresses. Scope: delivery:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["address"], "properties": {"address": {"type": "string"}, "reason": {"type": "string", "enum": ["hard_bounce", "complaint", "manual"]}, "detail": {"type": "string"}}}}}}, "responses": {"201": {"description": "Added."}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/suppressions/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "delete": {"summary": "Removes the address {id} from the suppression list. Scope: delivery:write.", "responses": {"204": {"description": "Removed."}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/campaigns/{id}/spend": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "The campaign's spend cap: budget_cents and spent_cents (sends reserve their cost atomically; failures give it back). Scope: read.", "responses": {"200": {"description": "The spend cap.", "content": {"application/json": {"schema": {"type": "object", "properties": {"campaign_id": {"type": "string"}, "budget_cents": {"type": "string"}, "spent_cents": {"type": "string"}}}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/warmup-schedules": {
          "get": {"summary": "Warm-up schedules per sending identity with today's day number and sends. Scope: read.", "responses": {"200": {"description": "Schedules.", "content": {"application/json": {"schema": {"type": "object"}}}}}}, "post": {"summary": "Creates or replaces a schedule: daily_caps[0] is day 1 (the identity's first day of sending); after the last day the last cap holds. Scope: delivery:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["sending_identity", "daily_caps"], "properties": {"sending_identity": {"type": "string"}, "daily_caps": {"type": "array", "items": {"type": "integer"}}}}}}}, "responses": {"200": {"description": "The schedule.", "content": {"application/json": {"schema": {"type": "object"}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/rate-limits": {
          "get": {"summary": "The limits in force and the live state: members (replicas, with their share of the key ring), counters of every member (key, limit, remaining, reset_at) and members that did not answer. Scope: read.", "responses": {"200": {"description": "Limits, members and counters.", "content": {"application/json": {"schema": {"type": "object", "properties": {"limits": {"type": "array", "items": {"$ref": "#/components/schemas/RateLimit"}}, "members": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "address": {"type": "string"}, "started_at": {"type": "string", "format": "date-time"}, "heartbeat_at": {"type": "string", "format": "date-time"}, "ring_share": {"type": "number"}}}}, "counters": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "limit_key": {"type": "string"}, "owner": {"type": "string"}, "limit": {"type": "string"}, "remaining": {"type": "string"}, "reset_at": {"type": "string", "format": "date-time"}, "unit": {"type": "string"}, "algorithm": {"type": "string"}}}}, "unreachable": {"type": "array", "items": {"type": "string"}}}}}}}}},
          "post": {"summary": "Creates or replaces the limit of a descriptor set (a value \"*\" matches any value, each with its own counter): requests_per_unit, unit (UNIT_SECOND|UNIT_MINUTE|UNIT_HOUR|UNIT_DAY), algorithm (ALGORITHM_TOKEN_BUCKET with burst, ALGORITHM_SLIDING_WINDOW, ALGORITHM_FIXED_WINDOW), or a warm-up schedule {start_date, daily_volumes} instead. Scope: ratelimit:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RateLimit"}}}}, "responses": {"200": {"description": "The limit.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RateLimit"}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/rate-limits/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "description": "The limit's key, e.g. domain=gmail.com,provider=smtp-primary.", "schema": {"type": "string"}}], "delete": {"summary": "Removes the limit {id} and its counters. Scope: ratelimit:write.", "responses": {"204": {"description": "Removed."}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/rate-limits/check": {
          "post": {"summary": "Asks for decisions as a sender would: {checks: [{descriptors: [{key, value}], hits}], peek}. Each check is answered OK or OVER_LIMIT with limit, remaining, reset_at and retry_after_ms, decided by the key's owner replica; peek takes nothing. Scope: ratelimit:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["checks"], "properties": {"checks": {"type": "array", "items": {"type": "object", "properties": {"descriptors": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}}}}, "hits": {"type": "string"}}}}, "peek": {"type": "boolean"}}}}}}, "responses": {"200": {"description": "One status per check.", "content": {"application/json": {"schema": {"type": "object", "properties": {"overall_code": {"type": "string", "enum": ["CODE_OK", "CODE_OVER_LIMIT"]}, "statuses": {"type": "array", "items": {"type": "object", "properties": {"code": {"type": "string"}, "key": {"type": "string"}, "limit_key": {"type": "string"}, "limit": {"type": "string"}, "remaining": {"type": "string"}, "reset_at": {"type": "string", "format": "date-time"}, "retry_after_ms": {"type": "string"}, "owner": {"type": "string"}, "by_failure_policy": {"type": "boolean"}}}}}}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/jobs": {
          "get": {"summary": "Sync jobs: one per remote table, with field mappings, conflict policies, schedule, deletion cap and the cursor of the last completed pull. Scope: read.", "responses": {"200": {"description": "Jobs.", "content": {"application/json": {"schema": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/SyncJob"}}}}}}}}},
          "post": {"summary": "Registers a remote table (base_id, table_id) to sync. token_env names the environment variable of the sync service that holds the API token. mappings map remote fields (name or id) to email, phone, first_name, last_name, email_subscribed, sms_subscribed, attributes.<name>, or (written to the table only) engagement_status, engagement_score, last_messaged_at; email or phone must be mapped. The mappings are checked against the table at the start of every run. Scope: sync:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncJob"}}}}, "responses": {"201": {"description": "The job.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncJob"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/jobs/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "One sync job. Scope: read.", "responses": {"200": {"description": "The job.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncJob"}}}}, "404": {"$ref": "#/components/responses/Problem"}}},
          "patch": {"summary": "Changes the fields given (name, token_env, direction, mappings — all of them —, modified_field, overlap_seconds, default_policy, schedule_seconds, reconcile_seconds, max_delete_percent), checked like a new job. A new modified_field clears the cursor. 409 while a run of the job is going. Scope: sync:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncJob"}}}}, "responses": {"200": {"description": "The job.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncJob"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}},
          "delete": {"summary": "Removes the job with its runs, links and conflicts; the subscribers stay. 409 while a run of the job is going. Scope: sync:write.", "responses": {"204": {"description": "Removed."}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/jobs/{id}/runs": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
          "get": {"summary": "The job's runs, newest first (page_size 1-100, default 20). Scope: read.", "parameters": [{"name": "page_size", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "Runs.", "content": {"application/json": {"schema": {"type": "object", "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/SyncRun"}}}}}}}, "404": {"$ref": "#/components/responses/Problem"}}},
          "post": {"summary": "Starts a run in the background: validate the mappings, pull (incremental by the modified field with the overlap window, or the whole table when full or due for reconciliation), soft-delete records gone from the table (a run over max_delete_percent aborts), push engagement and local changes. dry_run reports what it would change (planned) and changes nothing. A run left unfinished (crash, shutdown, error) is resumed from its checkpoint by the next one. 409 while a run of the job is going. Scope: sync:write.", "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"dry_run": {"type": "boolean"}, "full": {"type": "boolean"}}}}}}, "responses": {"202": {"description": "The run, RUNNING; follow it at /v1/sync/runs/{id}.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRun"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/runs/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "A run with its phase and counts while it goes, cursor before/after, API calls, 429s, and its per-record errors (the first 1,000). Scope: read.", "responses": {"200": {"description": "The run.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRun"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/jobs/{id}/conflicts": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "Fields both sides changed since the last sync, newest first, with the policy's decision (resolution local or remote) or pending (policy manual). pending=true lists only those. Scope: read.", "parameters": [{"name": "pending", "in": "query", "schema": {"type": "boolean"}}, {"name": "page_size", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "Conflicts.", "content": {"application/json": {"schema": {"type": "object", "properties": {"conflicts": {"type": "array", "items": {"$ref": "#/components/schemas/SyncConflict"}}}}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/sync/conflicts/{id}/resolve": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "post": {"summary": "Settles a pending conflict: take local (the subscriber's value is written to the record) or remote (the record's value to the subscriber). 409 when it was settled already. Scope: sync:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["take"], "properties": {"take": {"type": "string", "enum": ["local", "remote"]}}}}}}, "responses": {"200": {"description": "The conflict, resolved.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncConflict"}}}}, "400": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/verification/runs": {
          "post": {"summary": "Runs the checks now and stores the report: everything, or one component (schema: drift of each service schema against its migrations built in a scratch schema, under the migration lock; ledger: checksums, gaps, duplicates, unknown and pending migrations; data: orphans across schemas, malformed e-mail/phone, duplicates, empty required fields, messages stuck in sending, spend above budget, queued messages to suppressed or unsubscribed addresses; sync: links without subscribers, local vs remote counts, stale runs; health: gRPC health and latency of every service). Checks run read-only with short timeouts. Scope: verification:write.", "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"component": {"type": "string", "enum": ["schema", "ledger", "data", "sync", "health"]}, "schemas": {"type": "array", "items": {"type": "string"}}}}}}}, "responses": {"200": {"description": "The report.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerificationReport"}}}}, "400": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/verification/reports": {
          "get": {"summary": "Stored reports, newest first, without their issues (page_size 1-100, default 20). Scope: read.", "parameters": [{"name": "page_size", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "Reports.", "content": {"application/json": {"schema": {"type": "object", "properties": {"reports": {"type": "array", "items": {"$ref": "#/components/schemas/VerificationReport"}}}}}}}}}
        },
        "/v1/verification/reports/{id}": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "get": {"summary": "One report with its issues; {id} latest is the newest. Scope: read.", "responses": {"200": {"description": "The report.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VerificationReport"}}}}, "404": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/verification/issues": {
          "get": {"summary": "Issues tracked across reports by fingerprint: first and last seen, occurrences, whether alerted; open ones unless include_resolved=true. Scope: read.", "parameters": [{"name": "include_resolved", "in": "query", "schema": {"type": "boolean"}}], "responses": {"200": {"description": "Issues.", "content": {"application/json": {"schema": {"type": "object", "properties": {"issues": {"type": "array", "items": {"$ref": "#/components/schemas/VerificationIssue"}}}}}}}}}
        },
        "/v1/verification/issues/{id}/repairs": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "post": {"summary": "Proposes the repair of the open issue with fingerprint {id}: its SQL and the query of the rows it changes. An auto-repairable plan is PROPOSED; a destructive or ambiguous one is PENDING_REVIEW. 409 when the issue has no repair Herald can run or one is in flight. Scope: verification:write.", "responses": {"201": {"description": "The repair.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Repair"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/verification/repairs": {
          "get": {"summary": "Repairs with their runs, newest first; pending_review=true lists the review queue. Scope: read.", "parameters": [{"name": "pending_review", "in": "query", "schema": {"type": "boolean"}}], "responses": {"200": {"description": "Repairs.", "content": {"application/json": {"schema": {"type": "object", "properties": {"repairs": {"type": "array", "items": {"$ref": "#/components/schemas/Repair"}}}}}}}}}
        },
        "/v1/verification/repairs/{id}/run": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "post": {"summary": "Runs the repair: a dry run unless {\"apply\": true} (rolled back, reporting the rows it would change and whether the issue would be gone). For real it copies the affected rows to schema verification_backup (the rollback id), runs under lock and statement timeouts, re-runs the check, and commits only if the issue is gone; otherwise everything is rolled back (ROLLED_BACK). A plan in review must be approved first (409). Needs HERALD_VERIFICATION_REPAIR_DATABASE_URL. Scope: verification:write.", "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"apply": {"type": "boolean"}}}}}}, "responses": {"200": {"description": "The repair with its runs.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Repair"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/verification/repairs/{id}/review": {
          "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "post": {"summary": "Approves or rejects a plan in the review queue; the reviewer is the API key's name. Scope: verification:write.", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["approve"], "properties": {"approve": {"type": "boolean"}, "note": {"type": "string"}}}}}}, "responses": {"200": {"description": "The repair.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Repair"}}}}, "404": {"$ref": "#/components/responses/Problem"}, "409": {"$ref": "#/components/responses/Problem"}}}
        },
        "/v1/webhooks/{provider}": {
          "parameters": [{"name": "provider", "in": "path", "required": true, "schema": {"type": "string"}}], "post": {"summary": "A provider's delivery events. No API key: the X-Herald-Signature header (t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\"> with the provider's webhook_secret, at most 5 minutes old) is verified. Body: {\"events\": [{\"type\": delivered|bounced|failed|opened|clicked|complained, \"message_id\" or \"provider_message_id\", \"bounce\": hard|soft, \"detail\"}]}; a malformed event names its field and nothing is applied. Hard bounces and complaints add the address to the suppression list.", "security": [], "parameters": [{"name": "X-Herald-Signature", "in": "header", "required": true, "schema": {"type": "string"}}], "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}}, "responses": {"200": {"description": "Applied and ignored counts, with notes on the ignored.", "content": {"application/json": {"schema": {"type": "object", "properties": {"applied": {"type": "integer"}, "ignored": {"type": "integer"}, "notes": {"type": "array", "items": {"type": "string"}}}}}}}, "400": {"$ref": "#/components/responses/Problem"}, "401": {"$ref": "#/components/responses/Problem"}, "404": {"$ref": "#/components/responses/Problem"}}}
        }
      }
    }
    """#
}
