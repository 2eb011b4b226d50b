/**
 * Public discovery: the listing of live neurons (cursor-paginated, public fields only) and the lookup of a
 * provider or organization NPI, through the store (SQLite: rows from the file, status and last heartbeat from the
 * in-memory index, which is ahead of the file by at most one group commit; PostgreSQL: the rows themselves).
 */
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import type { Npi } from "../domain/Npi.js"
import type { ListNeuronsParams, NeuronStatus } from "../protocol/AxonApi.js"
import { InvalidRequest, NeuronList, NeuronView, NotFound, RegistryEntry } from "../protocol/AxonApi.js"
import type { NeuronEntry } from "./NeuronIndex.js"
import { ProviderStore } from "./ProviderStore.js"
import { RegistryStore } from "./RegistryStore.js"

/** Page size when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 100

/** The public view of a live registration (never its token). */
export const toView = (entry: NeuronEntry): NeuronView =>
  new NeuronView({
    registration_id: entry.registrationId,
    organization_npi: entry.organizationNpi as Npi,
    organization_name: entry.organizationName,
    organization_type: entry.organizationType,
    neuron_endpoint_url: entry.endpointUrl,
    status: entry.status as NeuronStatus,
    last_heartbeat_at: DateTime.unsafeMake(entry.lastHeartbeatMs),
    registered_at: DateTime.unsafeMake(entry.registeredAtMs)
  })

// A cursor is the last row's sequence number, base64url-encoded so that clients treat it as opaque.
const encodeCursor = (seq: number): string => Buffer.from(`s${seq}`).toString("base64url")
const decodeCursor = (cursor: string): number | undefined => {
  const text = Buffer.from(cursor, "base64url").toString("utf8")
  return /^s[1-9][0-9]{0,14}$/.test(text) && encodeCursor(Number(text.slice(1))) === cursor
    ? Number(text.slice(1))
    : undefined
}

/** Listing and lookup. */
export class Discovery extends Effect.Service<Discovery>()("neuron/registry/Discovery", {
  effect: Effect.gen(function*() {
    const store = yield* RegistryStore
    const providers = yield* ProviderStore

    /** `GET /v1/neurons`: live neurons in registration order, `limit` at a time. */
    const list = Effect.fn("Discovery.list")(function*(params: typeof ListNeuronsParams.Type) {
      const limit = params.limit ?? DEFAULT_PAGE_SIZE
      const after = params.cursor === undefined ? 0 : decodeCursor(params.cursor)
      if (after === undefined) {
        return yield* new InvalidRequest({ message: "cursor: must be a next_cursor from an earlier page" })
      }
      const page = yield* store.listLive({
        after,
        limit,
        organizationNpi: params.organization_npi,
        status: params.status
      })
      return new NeuronList({
        neurons: page.entries.map(toView),
        next_cursor: page.nextAfter === undefined ? null : encodeCursor(page.nextAfter)
      })
    })

    /** `GET /v1/registry/{npi}`: an organization's live neuron, else a provider listed by a live neuron. */
    const lookup = Effect.fn("Discovery.lookup")(function*(npi: Npi) {
      const organization = yield* store.liveByOrganization(npi)
      if (organization !== undefined) return entryFor(npi, "organization", organization.organizationName, organization)
      const [found] = yield* providers.findByNpi(npi)
      const entry = found === undefined ? undefined : yield* store.get(found.registration_id)
      if (found === undefined || entry === undefined || entry.status === "deregistered") {
        return yield* new NotFound({ message: "npi: no provider or organization is registered under this NPI" })
      }
      return entryFor(npi, "provider", found.provider_name, entry)
    })

    return { list, lookup } as const
  }),
  accessors: false
}) {}

const entryFor = (
  npi: Npi,
  entityType: "provider" | "organization",
  name: string | null,
  entry: NeuronEntry
): RegistryEntry => {
  const status = entry.status as NeuronStatus
  return new RegistryEntry({
    npi,
    entity_type: entityType,
    name,
    organization_npi: entry.organizationNpi as Npi,
    neuron_endpoint: {
      url: entry.endpointUrl,
      health_status: status,
      last_heartbeat: DateTime.unsafeMake(entry.lastHeartbeatMs)
    },
    status
  })
}
