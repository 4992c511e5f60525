/// The OpenAPI 3 description of the gateway, served at `/openapi.json`. Tests check that every
/// route the gateway registers is described here.
enum OpenAPIDocument {
  static let json = #"""
    {
      "openapi": "3.0.3",
      "info": {
        "title": "Herald API",
        "version": "1.0.0",
        "description": "Outbound messaging: subscribers and consent, campaigns, delivery, sync and verification. Every route but /health needs an API key (Authorization: Bearer <key>). Errors are application/problem+json. POST and PATCH under /v1 accept an Idempotency-Key header (1-255 printable ASCII characters): a retry with the same key and request gets the first answer again (Idempotent-Replayed: true) for 24 hours; the same key with another request is a 422."
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
              "checked_at": {"type": "string", "format": "date-time"}
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
        }
      }
    }
    """#
}
