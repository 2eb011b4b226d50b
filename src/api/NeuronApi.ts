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
import * as Schema from "effect/Schema"
import { Npi } from "../domain/Npi.js"
import {
  ForbiddenWire,
  InvalidRequestWire,
  NotFoundWire,
  RegisterProviderRequest,
  ServerErrorWire,
  Text,
  UnauthorizedWire
} from "../protocol/AxonApi.js"

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

/** One consent relationship. */
export const RelationshipView = Schema.Struct({
  relationship_id: Schema.String,
  patient_agent_id: Schema.String,
  provider_npi: Schema.String,
  consented_actions: Schema.Array(Schema.String),
  status: Schema.String,
  created_at: Schema.String,
  updated_at: Schema.String
})

/** `GET /v1/relationships`. */
export class RelationshipList extends Schema.Class<RelationshipList>("RelationshipList")({
  relationships: Schema.Array(RelationshipView)
}) {}

/** `GET /v1/relationships` filters. */
export const RelationshipParams = Schema.Struct({
  patient_agent_id: Schema.optional(Text(256, "a patient agent id")),
  provider_npi: Schema.optional(Npi)
})

/**
 * The admin rule: with an admin token configured, `Authorization: Bearer <admin token>` is required (401);
 * without one, only loopback peers are answered (403 for others).
 */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("neuron/AdminAuth", {
  failure: Schema.Union(UnauthorizedWire, ForbiddenWire)
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
  )
  .add(
    HttpApiEndpoint.get("listRelationships", "/v1/relationships")
      .setUrlParams(RelationshipParams)
      .addSuccess(RelationshipList)
  )
  .middleware(AdminAuth)
{}

/** The whole local API. */
export class NeuronApi extends HttpApi.make("neuron")
  .add(HealthGroup)
  .add(AdminGroup)
  .addError(InvalidRequestWire)
  .addError(ServerErrorWire)
  .annotate(OpenApi.Title, "Neuron local API")
{}
