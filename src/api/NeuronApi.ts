/**
 * The Neuron's local HTTP API (PROTOCOL.md section 3), on the same server as the handshake WebSocket:
 * `/health` for monitors, and the admin routes under `/v1` for the clinic's operators and scripts.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import { ApiKeyInfo, ApiKeyScope } from "../access/ApiKeys.js"
import { AgentCardDocument } from "../discovery/AgentCard.js"
import { Npi } from "../domain/Npi.js"
import * as ApiDocs from "../http/ApiDocs.js"
import { wire } from "../http/ErrorBody.js"
import {
  ForbiddenWire,
  InvalidRequestWire,
  NotFoundWire,
  RegisterProviderRequest,
  ServerErrorWire,
  Text,
  UnauthorizedWire
} from "../protocol/AxonApi.js"
import { ConsentRevoked, RelationshipId, RevokeConsentRequest } from "../protocol/ConsentRevocation.js"

/** `GET /health`: what a monitor polls. No secrets. */
export class NeuronHealthView extends Schema.Class<NeuronHealthView>("NeuronHealthView")({
  status: Schema.Literal("healthy", "degraded"),
  registration: Schema.String,
  last_heartbeat_at: Schema.NullOr(Schema.String)
}) {}

/** A provider as this Neuron keeps it, with its state towards the registry. */
export class ProviderStatusView extends Schema.Class<ProviderStatusView>("ProviderStatusView")({
  provider_npi: Npi,
  provider_name: Schema.NullOr(Schema.String),
  provider_types: Schema.Array(Schema.String),
  specialty: Schema.NullOr(Schema.String),
  provider_endpoint_url: Schema.NullOr(Schema.String),
  /** `pending` until the registry has it, `registered`, or `removing` until the registry has dropped it. */
  status: Schema.String,
  provider_id: Schema.NullOr(Schema.String),
  /** The registry's last refusal of this provider, when it refused it (for example an unknown provider type). */
  last_error: Schema.NullOr(Schema.String),
  updated_at: Schema.String
}) {}

/** `201`: the provider is registered with the registry. */
export class ProviderCreated extends Schema.Class<ProviderCreated>("ProviderCreated")(
  { outcome: Schema.Literal("registered"), provider: ProviderStatusView },
  HttpApiSchema.annotations({ status: 201 })
) {}

/**
 * `202`: the provider is stored `pending` and will be registered when the registry answers (or, with `last_error`,
 * the registry refused it). `outcome` tells the two answers apart (and lets the API encode the right one).
 */
export class ProviderAccepted extends Schema.Class<ProviderAccepted>("ProviderAccepted")(
  { outcome: Schema.Literal("pending"), provider: ProviderStatusView },
  HttpApiSchema.annotations({ status: 202 })
) {}

/** `GET /v1/providers`. */
export class ProviderStatusList extends Schema.Class<ProviderStatusList>("ProviderStatusList")({
  providers: Schema.Array(ProviderStatusView)
}) {}

/** `202` to a removal that waits for the registry: the provider is `removing` and no longer served. */
export class ProviderRemovalPending extends Schema.Class<ProviderRemovalPending>("ProviderRemovalPending")(
  { provider_npi: Npi, status: Schema.Literal("removing") },
  HttpApiSchema.annotations({ status: 202 })
) {}

/** One handshake in progress. */
export const ActiveHandshake = Schema.Struct({
  connection_id: Schema.String,
  started_at: Schema.String,
  state: Schema.String,
  provider_npi: Schema.NullOr(Schema.String)
})

/** `GET /v1/status`: never the bearer token. */
export class NeuronStatusView extends Schema.Class<NeuronStatusView>("NeuronStatusView")({
  registration_id: Schema.NullOr(Schema.String),
  registration: Schema.String,
  organization_npi: Schema.NullOr(Schema.String),
  axon_url: Schema.NullOr(Schema.String),
  heartbeat: Schema.Struct({
    status: Schema.Literal("healthy", "degraded", "stopped"),
    last_heartbeat_at: Schema.NullOr(Schema.String),
    consecutive_failures: Schema.Int,
    next_attempt_at: Schema.NullOr(Schema.String)
  }),
  providers: Schema.Struct({ pending: Schema.Int, registered: Schema.Int, removing: Schema.Int }),
  active_handshakes: Schema.Array(ActiveHandshake)
}) {}

/** One consent relationship (PROTOCOL.md section 8): never the patient's key. */
export class RelationshipView extends Schema.Class<RelationshipView>("RelationshipView")({
  relationship_id: Schema.String,
  patient_agent_id: Schema.String,
  provider_npi: Schema.String,
  consented_actions: Schema.Array(Schema.String),
  status: Schema.Literal("active", "revoked", "terminated"),
  created_at: Schema.String,
  updated_at: Schema.String,
  /** When it was revoked or terminated; null while active. */
  ended_at: Schema.NullOr(Schema.String),
  /** The organization's reason, or "revoked by the patient"; null while active. */
  end_reason: Schema.NullOr(Schema.String)
}) {}

/** `POST /v1/relationships/{id}/terminate` body. */
export class TerminateRequest extends Schema.Class<TerminateRequest>("TerminateRequest")({
  reason: Text(500, "the reason for ending the relationship")
}) {}

/** 409: the relationship has ended already (it is not active). */
export class RelationshipAlreadyEnded extends Schema.TaggedError<RelationshipAlreadyEnded>()(
  "RelationshipAlreadyEnded",
  { message: Schema.String }
) {}
/** 403: a revocation whose signature, key or time does not hold; nothing changed. */
export class ConsentRefused extends Schema.TaggedError<ConsentRefused>()("ConsentRefused", {
  message: Schema.String
}) {}
export const RelationshipAlreadyEndedWire = wire(RelationshipAlreadyEnded, {
  tag: "RelationshipAlreadyEnded",
  code: "ALREADY_ENDED",
  status: 409
})
export const ConsentRefusedWire = wire(ConsentRefused, { tag: "ConsentRefused", code: "CONSENT_FAILED", status: 403 })

const RelationshipIdParam = HttpApiSchema.param("relationship_id", RelationshipId)

/** `GET /v1/relationships`. */
export class RelationshipList extends Schema.Class<RelationshipList>("RelationshipList")({
  relationships: Schema.Array(RelationshipView)
}) {}

/** `GET /v1/relationships` filters. */
export const RelationshipParams = Schema.Struct({
  patient_agent_id: Schema.optional(Text(256, "a patient agent id")),
  provider_npi: Schema.optional(Npi)
})

/** `POST /v1/api-keys`. */
export const CreateApiKeyRequest = Schema.Struct({
  name: Text(100, "a name for the key"),
  scope: ApiKeyScope
})

/** `201`: the key, shown this once. */
export class ApiKeyCreated extends Schema.Class<ApiKeyCreated>("ApiKeyCreated")(
  {
    id: Schema.String,
    key: Schema.String.annotations({ description: "The key itself: shown once, kept only as its SHA-256" }),
    name: Schema.String,
    scope: ApiKeyScope,
    created_at: Schema.String
  },
  HttpApiSchema.annotations({ status: 201 })
) {}

/** `GET /v1/api-keys`: never a key or its hash. */
export class ApiKeyList extends Schema.Class<ApiKeyList>("ApiKeyList")({ api_keys: Schema.Array(ApiKeyInfo) }) {}

/** An API key over its rate limit (`429` with `Retry-After`). */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", { message: Schema.String }) {}

/** The wire form of `RateLimited`. */
export const RateLimitedWire = wire(RateLimited, { tag: "RateLimited", code: "RATE_LIMITED", status: 429 })

/** Who is calling an admin route, for the audit log: `admin`, `loopback` or `api_key:<id>`. */
export class AdminCaller extends Context.Tag("neuron/AdminCaller")<AdminCaller, { readonly actor: string }>() {}

/**
 * `503 STORAGE_UNAVAILABLE`: a write the Neuron cannot store (disk full, database locked by another process past a
 * bounded wait, a disk error, a read-only file). Nothing was stored; the same request succeeds once the cause is gone.
 */
export class StorageUnavailableError
  extends Schema.TaggedError<StorageUnavailableError>()("StorageUnavailableError", { message: Schema.String })
{}

/** The wire form of `StorageUnavailableError`. */
export const StorageUnavailableWire = wire(StorageUnavailableError, {
  tag: "StorageUnavailableError",
  code: "STORAGE_UNAVAILABLE",
  status: 503,
  description: "The Neuron cannot store this write now (disk full, database locked); nothing was stored."
})

/**
 * The admin rule: the admin token (`Authorization: Bearer`) has full access; an API key (`X-API-Key` or
 * `Authorization: Bearer nrn_...`) is checked, scoped and rate-limited (401, 403, 429); without a credential,
 * the admin token is required when configured (401), else only loopback peers are answered (403 for others).
 */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("neuron/AdminAuth", {
  failure: Schema.Union(UnauthorizedWire, ForbiddenWire, RateLimitedWire),
  provides: AdminCaller
}) {}

/** Health, for monitors: open to all, no secrets. */
export class HealthGroup extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(NeuronHealthView))
{}

/** Operator routes. */
export class AdminGroup extends HttpApiGroup.make("admin")
  .add(HttpApiEndpoint.get("status", "/v1/status").addSuccess(NeuronStatusView))
  .add(HttpApiEndpoint.get("listProviders", "/v1/providers").addSuccess(ProviderStatusList))
  .add(
    HttpApiEndpoint.post("addProvider", "/v1/providers")
      .setPayload(RegisterProviderRequest)
      .addSuccess(ProviderCreated)
      .addSuccess(ProviderAccepted)
      .addError(StorageUnavailableWire)
      .annotate(
        OpenApi.Description,
        "Add a provider: 201 when the registry has it, 202 when kept pending until the registry answers."
      )
  )
  .add(
    HttpApiEndpoint.del("removeProvider")`/v1/providers/${HttpApiSchema.param("provider_npi", Npi)}`
      .addSuccess(HttpApiSchema.NoContent)
      .addSuccess(ProviderRemovalPending)
      .addError(NotFoundWire)
      .addError(StorageUnavailableWire)
  )
  .add(
    HttpApiEndpoint.get("listRelationships", "/v1/relationships")
      .setUrlParams(RelationshipParams)
      .addSuccess(RelationshipList)
  )
  .add(
    HttpApiEndpoint.post("createApiKey", "/v1/api-keys")
      .setPayload(CreateApiKeyRequest)
      .addSuccess(ApiKeyCreated)
      .addError(StorageUnavailableWire)
      .annotate(OpenApi.Description, "Make an API key. The key is in this answer only; the Neuron keeps its hash.")
  )
  .add(HttpApiEndpoint.get("listApiKeys", "/v1/api-keys").addSuccess(ApiKeyList))
  .add(
    HttpApiEndpoint.del("revokeApiKey")`/v1/api-keys/${HttpApiSchema.param("id", Schema.String)}`
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFoundWire)
      .addError(StorageUnavailableWire)
      .annotate(OpenApi.Description, "Revoke an API key: it is refused (401) from the next request on.")
  )
  .add(
    HttpApiEndpoint.get("getRelationship")`/v1/relationships/${RelationshipIdParam}`
      .addSuccess(RelationshipView)
      .addError(NotFoundWire)
  )
  .add(
    HttpApiEndpoint.post("terminateRelationship")`/v1/relationships/${RelationshipIdParam}/terminate`
      .setPayload(TerminateRequest)
      .addSuccess(RelationshipView)
      .addError(NotFoundWire)
      .addError(RelationshipAlreadyEndedWire)
      .annotate(OpenApi.Description, "End an active relationship for the organization: permanent, audited.")
  )
  .middleware(AdminAuth)
{}

/** The patient's routes: public, the signature is the credential. */
export class ConsentGroup extends HttpApiGroup.make("consent")
  .add(
    HttpApiEndpoint.post("revoke", "/v1/consent/revoke")
      .setPayload(RevokeConsentRequest)
      .addSuccess(ConsentRevoked)
      .addError(ConsentRefusedWire)
      .addError(NotFoundWire)
      .addError(RelationshipAlreadyEndedWire)
      .annotate(
        OpenApi.Description,
        "Revoke a relationship with a signature by its patient key over careagent-consent-revoke:<id>:<revoked_at>."
      )
  )
{}

/** How other agents find out what this Neuron is (PROTOCOL.md section 9): public, never a secret. */
export class DiscoveryGroup extends HttpApiGroup.make("discovery")
  .add(
    HttpApiEndpoint.get("agentCard", "/.well-known/agent.json")
      .addSuccess(AgentCardDocument)
      .annotate(OpenApi.Description, "The A2A Agent Card: the organization, its providers as skills, the handshake.")
  )
{}

/** The whole local API. */
export class NeuronApi extends HttpApi.make("neuron")
  .add(HealthGroup)
  .add(AdminGroup)
  .add(ConsentGroup)
  .add(DiscoveryGroup)
  .addError(InvalidRequestWire)
  .addError(ServerErrorWire)
  .annotate(OpenApi.Title, "Neuron local API")
  .annotate(
    OpenApi.Transform,
    ApiDocs.withRoutesBeside({
      "/metrics": ApiDocs.getRoute({
        operationId: "metrics",
        tag: "health",
        description: "Prometheus text exposition: health, heartbeats, handshakes, the queue, SQLite, API requests.",
        responses: { 200: { description: "Prometheus text", contentType: "text/plain; version=0.0.4" } }
      }),
      "/ws/handshake": ApiDocs.getRoute({
        operationId: "handshake",
        tag: "handshake",
        description:
          "The consent handshake: a WebSocket upgrade, then JSON text frames (auth, challenge, challenge_response, " +
          "established or error). 503 with Retry-After when the handshake queue times out; 403 for an Origin " +
          "outside NEURON_ALLOWED_ORIGINS.",
        responses: {
          101: { description: "Switching Protocols: the WebSocket is open" },
          403: { description: "Origin not allowed" },
          426: { description: "A request without the WebSocket upgrade" },
          503: { description: "The handshake queue timed out (Retry-After)" }
        }
      })
    })
  )
{}
