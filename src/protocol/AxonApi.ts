/**
 * The Axon registry's HTTP API (PROTOCOL.md section 1), defined once: the registry serves it with
 * `HttpApiBuilder`, the Neuron's `AxonClient` encodes requests and decodes answers with the same schemas,
 * and `OpenApi.fromApi(AxonApi)` documents it.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"
import { Npi } from "../domain/Npi.js"
import * as ApiDocs from "../http/ApiDocs.js"
import { wire } from "../http/ErrorBody.js"

// ---------------------------------------------------------------------------------------------------------------
// Field schemas
// ---------------------------------------------------------------------------------------------------------------

/** Printable text: no control characters (NUL included), 1..`max` characters. */
export const Text = (max: number, what: string) =>
  Schema.String.pipe(
    Schema.filter((s) =>
      (s.length >= 1 && s.length <= max && !/[\u0000-\u001f\u007f]/.test(s)) ||
      `must be ${what}: 1 to ${max} characters, no control characters`
    )
  )

/** A name (organization or provider): 1..200 characters of printable text. */
export const Name = Text(200, "a name")

/** `organization_type`, `specialty` and provider types: short identifiers such as `practice` or `physician`. */
export const Label = Schema.String.pipe(
  Schema.filter((s) =>
    /^[A-Za-z0-9][A-Za-z0-9 ._\-/]{0,63}$/.test(s) ||
    "must be 1 to 64 letters, digits, spaces or . _ - / (starting with a letter or digit)"
  )
)

const isEndpointUrl = (s: string): boolean => {
  if (s.length > 2048 || /[\s\u0000-\u001f\u007f]/.test(s)) return false
  try {
    const url = new URL(s)
    return ["http:", "https:", "ws:", "wss:"].includes(url.protocol) && url.hostname.length > 0 &&
      url.username === "" && url.password === ""
  } catch {
    return false
  }
}

/** An endpoint URL: `http(s)://` or `ws(s)://`, at most 2048 characters, no credentials in it. */
export const EndpointUrl = Schema.String.pipe(
  Schema.filter((s) => isEndpointUrl(s) || "must be an http(s):// or ws(s):// URL of at most 2048 characters"),
  Schema.annotations({
    identifier: "EndpointUrl",
    examples: ["https://neuron.example.org"],
    // Random strings are almost never URLs: property tests draw web URLs in each accepted scheme instead.
    arbitrary: () => (fc) =>
      fc.tuple(fc.constantFrom("http", "https", "ws", "wss"), fc.webUrl({ withQueryParameters: true }))
        .map(([scheme, url]) => url.replace(/^https?/, scheme))
        .filter(isEndpointUrl)
  })
)

/** A registration id as issued by a registry (this one issues UUIDs; others may use other opaque ids). */
export const RegistrationId = Schema.String.pipe(
  Schema.filter((s) => /^[A-Za-z0-9_-]{1,128}$/.test(s) || "must be a registration id: 1 to 128 of A-Z a-z 0-9 _ -"),
  Schema.annotations({ identifier: "RegistrationId" })
)

/** Heartbeat interval in whole seconds, 1..3600. */
export const HeartbeatIntervalS = Schema.Int.pipe(
  Schema.between(1, 3600, { message: () => "must be an integer number of seconds from 1 to 3600" })
)

/** A neuron as the registry sees it. `deregistered` neurons are never shown: they answer 404. */
export const NeuronStatus = Schema.Literal("reachable", "down")
/** @see NeuronStatus */
export type NeuronStatus = typeof NeuronStatus.Type

/** ISO-8601 UTC timestamps on the wire. */
export const Timestamp = Schema.DateTimeUtc

// ---------------------------------------------------------------------------------------------------------------
// Errors: each has the project's wire shape {"error":{"code","message"}}
// ---------------------------------------------------------------------------------------------------------------

/** 400: the body, a path or a query parameter is invalid; the message names the field. */
export class InvalidRequest
  extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", { message: Schema.String })
{}
/** 401: missing, malformed or unknown token. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", { message: Schema.String }) {}
/** 403: a valid token used on another neuron's routes. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", { message: Schema.String }) {}
/** 404: the registration was deregistered (or never existed) — its own token now answers this. */
export class NotRegistered extends Schema.TaggedError<NotRegistered>()("NotRegistered", { message: Schema.String }) {}
/** 404: nothing is registered under this NPI (discovery). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { message: Schema.String }) {}
/** 409: the organization NPI is already registered and no enrollment token allows a re-registration. */
export class AlreadyRegistered
  extends Schema.TaggedError<AlreadyRegistered>()("AlreadyRegistered", { message: Schema.String })
{}
/** 503: the registry's database cannot be reached now (PROTOCOL.md section 6); try again later. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", { message: Schema.String }) {}
/** 500: anything unexpected; the message reveals no internals. */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", { message: Schema.String }) {}

/** Wire forms of the errors above, with their codes and statuses. */
export const InvalidRequestWire = wire(InvalidRequest, { tag: "InvalidRequest", code: "INVALID_REQUEST", status: 400 })
export const UnauthorizedWire = wire(Unauthorized, { tag: "Unauthorized", code: "UNAUTHORIZED", status: 401 })
export const ForbiddenWire = wire(Forbidden, { tag: "Forbidden", code: "FORBIDDEN", status: 403 })
export const NotRegisteredWire = wire(NotRegistered, { tag: "NotRegistered", code: "NOT_REGISTERED", status: 404 })
export const NotFoundWire = wire(NotFound, { tag: "NotFound", code: "NOT_FOUND", status: 404 })
export const AlreadyRegisteredWire = wire(AlreadyRegistered, {
  tag: "AlreadyRegistered",
  code: "ALREADY_REGISTERED",
  status: 409
})
export const ServerErrorWire = wire(ServerError, { tag: "ServerError", code: "SERVER_ERROR", status: 500 })
export const UnavailableWire = wire(Unavailable, { tag: "Unavailable", code: "UNAVAILABLE", status: 503 })

// ---------------------------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------------------------

/** `POST /v1/neurons` body. */
export class RegisterNeuronRequest extends Schema.Class<RegisterNeuronRequest>("RegisterNeuronRequest")({
  organization_npi: Npi,
  organization_name: Name,
  organization_type: Label,
  neuron_endpoint_url: EndpointUrl,
  heartbeat_interval_s: Schema.optional(HeartbeatIntervalS)
}) {}

const registrationFields = {
  registration_id: RegistrationId,
  /** Shown once, on registration; the registry keeps only its hash. */
  bearer_token: Schema.Redacted(Schema.String),
  status: Schema.Literal("reachable"),
  heartbeat_interval_s: HeartbeatIntervalS,
  ttl_s: Schema.Int
}

/** `201` to a first registration. */
export class NeuronRegistered extends Schema.Class<NeuronRegistered>("NeuronRegistered")(
  registrationFields,
  HttpApiSchema.annotations({ status: 201 })
) {}

/** `200` to a re-registration with the enrollment token: same id, new bearer token. */
export class NeuronReregistered extends Schema.Class<NeuronReregistered>("NeuronReregistered")(
  registrationFields,
  HttpApiSchema.annotations({ status: 200 })
) {}

/** The public view of a neuron (`GET /v1/neurons/{id}` and the listing): never a token. */
export class NeuronView extends Schema.Class<NeuronView>("NeuronView")({
  registration_id: RegistrationId,
  organization_npi: Npi,
  organization_name: Schema.String,
  organization_type: Schema.String,
  neuron_endpoint_url: Schema.String,
  status: NeuronStatus,
  last_heartbeat_at: Timestamp,
  registered_at: Timestamp
}) {}

/** `PUT /v1/neurons/{id}/endpoint` body: the heartbeat. */
export class HeartbeatRequest extends Schema.Class<HeartbeatRequest>("HeartbeatRequest")({
  neuron_endpoint_url: EndpointUrl
}) {}

/** `200` to a heartbeat. */
export class HeartbeatAccepted extends Schema.Class<HeartbeatAccepted>("HeartbeatAccepted")({
  status: Schema.Literal("reachable"),
  last_heartbeat_at: Timestamp
}) {}

/** `POST /v1/neurons/{id}/providers` body. */
export class RegisterProviderRequest extends Schema.Class<RegisterProviderRequest>("RegisterProviderRequest")({
  provider_npi: Npi,
  provider_name: Schema.optional(Name),
  provider_types: Schema.optional(Schema.Array(Label).pipe(Schema.maxItems(32))),
  specialty: Schema.optional(Label),
  provider_endpoint_url: Schema.optional(EndpointUrl)
}) {}

const providerRegisteredFields = { provider_id: Schema.String, status: Schema.Literal("registered") }

/** `201` to a new provider. */
export class ProviderRegistered extends Schema.Class<ProviderRegistered>("ProviderRegistered")(
  providerRegisteredFields,
  HttpApiSchema.annotations({ status: 201 })
) {}

/** `200` to a provider that was already registered (the add is idempotent). */
export class ProviderAlreadyRegistered extends Schema.Class<ProviderAlreadyRegistered>("ProviderAlreadyRegistered")(
  providerRegisteredFields,
  HttpApiSchema.annotations({ status: 200 })
) {}

/** One provider in `GET /v1/neurons/{id}/providers`. */
export class ProviderView extends Schema.Class<ProviderView>("ProviderView")({
  provider_npi: Npi,
  provider_id: Schema.String,
  provider_name: Schema.NullOr(Schema.String),
  provider_endpoint_url: Schema.NullOr(Schema.String),
  registered_at: Timestamp
}) {}

/** `GET /v1/neurons/{id}/providers`. */
export class ProviderList extends Schema.Class<ProviderList>("ProviderList")({
  providers: Schema.Array(ProviderView)
}) {}

/** `GET /v1/registry/{npi}`: a provider or an organization, with its neuron's endpoint. */
export class RegistryEntry extends Schema.Class<RegistryEntry>("RegistryEntry")({
  npi: Npi,
  entity_type: Schema.Literal("provider", "organization"),
  name: Schema.NullOr(Schema.String),
  organization_npi: Npi,
  neuron_endpoint: Schema.Struct({
    url: Schema.String,
    health_status: NeuronStatus,
    last_heartbeat: Timestamp
  }),
  status: NeuronStatus
}) {}

/** `GET /v1/neurons` query. */
export const ListNeuronsParams = Schema.Struct({
  organization_npi: Schema.optional(Npi),
  status: Schema.optional(NeuronStatus),
  limit: Schema.optional(
    Schema.NumberFromString.pipe(
      Schema.int(),
      Schema.between(1, 500, { message: () => "must be an integer from 1 to 500" })
    )
  ),
  cursor: Schema.optional(Text(256, "a cursor from next_cursor"))
})

/** `GET /v1/neurons`. */
export class NeuronList extends Schema.Class<NeuronList>("NeuronList")({
  neurons: Schema.Array(NeuronView),
  next_cursor: Schema.NullOr(Schema.String)
}) {}

/** One alert, as written to `alerts-YYYYMMDD.jsonl` and served by `GET /alerts`. */
export class Alert extends Schema.Class<Alert>("Alert")({
  alert_type: Schema.Literal("neuron_down", "neuron_deregistered", "neuron_recovered"),
  registration_id: RegistrationId,
  organization_npi: Npi,
  missed_beats: Schema.Int,
  last_seen: Timestamp,
  action: Schema.String,
  ts: Timestamp
}) {}

/** `GET /alerts` query. */
export const AlertsParams = Schema.Struct({
  since: Schema.optional(Schema.DateTimeUtc),
  limit: Schema.optional(
    Schema.NumberFromString.pipe(
      Schema.int(),
      Schema.between(1, 1000, { message: () => "must be an integer from 1 to 1000" })
    )
  )
})

/** `GET /alerts`, newest first. */
export class AlertList extends Schema.Class<AlertList>("AlertList")({ alerts: Schema.Array(Alert) }) {}

/** `GET /health`. */
export class RegistryHealth extends Schema.Class<RegistryHealth>("RegistryHealth")({
  status: Schema.Literal("ok"),
  uptime_s: Schema.Number,
  neurons: Schema.Int
}) {}

/** `GET /stats`. */
export class RegistryStats extends Schema.Class<RegistryStats>("RegistryStats")({
  total_neurons: Schema.Int,
  reachable_neurons: Schema.Int,
  down_neurons: Schema.Int,
  total_providers: Schema.Int,
  last_sweep_at: Schema.NullOr(Timestamp)
}) {}

// ---------------------------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------------------------

const registrationIdParam = HttpApiSchema.param("registration_id", RegistrationId)
const npiParam = HttpApiSchema.param("npi", Npi)
const providerNpiParam = HttpApiSchema.param("provider_npi", Npi)

/** Registration and public listing of neurons. */
export class NeuronsGroup extends HttpApiGroup.make("neurons")
  .add(
    HttpApiEndpoint.post("register", "/v1/neurons")
      .setPayload(RegisterNeuronRequest)
      .addSuccess(NeuronRegistered)
      .addSuccess(NeuronReregistered)
      .addError(UnauthorizedWire)
      .addError(AlreadyRegisteredWire)
      .annotate(OpenApi.Description, "Register an organization's neuron. Needs the enrollment token when one is set.")
  )
  .add(
    HttpApiEndpoint.get("list", "/v1/neurons")
      .setUrlParams(ListNeuronsParams)
      .addSuccess(NeuronList)
      .annotate(OpenApi.Description, "Public discovery: neurons with public fields only, cursor-paginated.")
  )
{}

/**
 * A registered neuron's own routes. They carry `Authorization: Bearer <bearer_token>`; the registry checks it
 * against the path's registration: 401 missing or unknown, 403 another neuron's, 404 deregistered.
 */
export class NeuronGroup extends HttpApiGroup.make("neuron")
  .add(
    HttpApiEndpoint.get("get")`/v1/neurons/${registrationIdParam}`
      .addSuccess(NeuronView)
  )
  .add(
    HttpApiEndpoint.put("heartbeat")`/v1/neurons/${registrationIdParam}/endpoint`
      .setPayload(HeartbeatRequest)
      .addSuccess(HeartbeatAccepted)
      .annotate(OpenApi.Description, "The heartbeat: confirms the neuron is alive at this endpoint.")
  )
  .add(
    HttpApiEndpoint.del("deregister")`/v1/neurons/${registrationIdParam}`
      .addSuccess(HttpApiSchema.NoContent)
  )
  .addError(UnauthorizedWire)
  .addError(ForbiddenWire)
  .addError(NotRegisteredWire)
{}

/** A neuron's providers (same bearer-token rule as `NeuronGroup`). */
export class ProvidersGroup extends HttpApiGroup.make("providers")
  .add(
    HttpApiEndpoint.post("add")`/v1/neurons/${registrationIdParam}/providers`
      .setPayload(RegisterProviderRequest)
      .addSuccess(ProviderRegistered)
      .addSuccess(ProviderAlreadyRegistered)
  )
  .add(
    HttpApiEndpoint.del("remove")`/v1/neurons/${registrationIdParam}/providers/${providerNpiParam}`
      .addSuccess(HttpApiSchema.NoContent)
  )
  .add(
    HttpApiEndpoint.get("list")`/v1/neurons/${registrationIdParam}/providers`
      .addSuccess(ProviderList)
  )
  .addError(UnauthorizedWire)
  .addError(ForbiddenWire)
  .addError(NotRegisteredWire)
{}

/** Public discovery by NPI (the CareAgent Axon path). */
export class DiscoveryGroup extends HttpApiGroup.make("discovery")
  .add(
    HttpApiEndpoint.get("lookup")`/v1/registry/${npiParam}`
      .addSuccess(RegistryEntry)
      .addError(NotFoundWire)
  )
{}

/** Operations: health, statistics, alerts. */
export class OperationsGroup extends HttpApiGroup.make("operations")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(RegistryHealth))
  .add(HttpApiEndpoint.get("stats", "/stats").addSuccess(RegistryStats))
  .add(HttpApiEndpoint.get("alerts", "/alerts").setUrlParams(AlertsParams).addSuccess(AlertList))
{}

/**
 * The whole registry API. Every route may also answer `400 INVALID_REQUEST`, `500 SERVER_ERROR`, or
 * `503 UNAVAILABLE` when the registry's database is out of reach.
 */
export class AxonApi extends HttpApi.make("axon")
  .add(NeuronsGroup)
  .add(NeuronGroup)
  .add(ProvidersGroup)
  .add(DiscoveryGroup)
  .add(OperationsGroup)
  .addError(InvalidRequestWire)
  .addError(ServerErrorWire)
  .addError(UnavailableWire)
  .annotate(OpenApi.Title, "Axon registry")
  .annotate(OpenApi.Transform, ApiDocs.withRoutesBeside())
{}
