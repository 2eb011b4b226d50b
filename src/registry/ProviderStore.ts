/**
 * A neuron's providers, in the registry's database (read off the hot path), in SQL both dialects speak. Adds
 * and removes are idempotent and durable when answered. An add is `INSERT ... ON CONFLICT DO NOTHING`, then an
 * `UPDATE` when the row was there: one provider added through two instances at once is one row (the second
 * insert waits for the first and finds the row), with one `provider_id` in both answers. A deregistered
 * registration keeps its rows (hidden from discovery).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import type { Npi } from "../domain/Npi.js"
import type { RegisterProviderRequest } from "../protocol/AxonApi.js"
import { NotRegistered, ProviderView } from "../protocol/AxonApi.js"
import { Availability } from "./Availability.js"
import type { NeuronEntry } from "./NeuronIndex.js"

interface ProviderRow {
  readonly provider_npi: string
  readonly provider_id: string
  readonly provider_name: string | null
  readonly provider_endpoint_url: string | null
  readonly registered_at: number
}

const notRegistered = new NotRegistered({ message: "this registration was deregistered; register again" })

/** Providers of registered neurons. */
export class ProviderStore extends Effect.Service<ProviderStore>()("neuron/registry/ProviderStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { guard } = yield* Availability

    /** Adds (or refreshes) a provider; `created` is false when it was already registered (same `provider_id`). */
    const add = Effect.fn("ProviderStore.add")(function*(entry: NeuronEntry, request: RegisterProviderRequest) {
      if (entry.status === "deregistered") return yield* notRegistered
      const nowMs = yield* Clock.currentTimeMillis
      const fields = {
        provider_name: request.provider_name ?? null,
        provider_types: request.provider_types === undefined ? null : JSON.stringify(request.provider_types),
        specialty: request.specialty ?? null,
        provider_endpoint_url: request.provider_endpoint_url ?? null
      }
      const providerId = Crypto.randomUUID()
      const [inserted] = yield* guard(sql<{ provider_id: string }>`INSERT INTO providers ${
        sql.insert({
          registration_id: entry.registrationId,
          provider_npi: request.provider_npi,
          provider_id: providerId,
          ...fields,
          registered_at: nowMs
        })
      } ON CONFLICT (registration_id, provider_npi) DO NOTHING RETURNING provider_id`)
      if (inserted !== undefined) return { providerId: inserted.provider_id, created: true }
      const [existing] = yield* guard(sql<{ provider_id: string }>`UPDATE providers SET ${sql.update(fields)}
        WHERE registration_id = ${entry.registrationId} AND provider_npi = ${request.provider_npi}
        RETURNING provider_id`)
      // Removed between the two statements: the caller may add it again.
      if (existing === undefined) return yield* Effect.dieMessage("provider removed while it was being added")
      return { providerId: existing.provider_id, created: false }
    })

    /** Removes a provider; removing one that is not there is not an error. */
    const remove = Effect.fn("ProviderStore.remove")(function*(entry: NeuronEntry, providerNpi: string) {
      if (entry.status === "deregistered") return yield* notRegistered
      yield* guard(sql`DELETE FROM providers WHERE registration_id = ${entry.registrationId}
        AND provider_npi = ${providerNpi}`)
    })

    /** The neuron's providers, oldest first. */
    const list = Effect.fn("ProviderStore.list")(function*(entry: NeuronEntry) {
      const rows = yield* guard(sql<ProviderRow>`SELECT provider_npi, provider_id, provider_name,
        provider_endpoint_url, registered_at FROM providers WHERE registration_id = ${entry.registrationId}
        ORDER BY registered_at, provider_npi`)
      return rows.map((row) =>
        new ProviderView({
          provider_npi: row.provider_npi as Npi,
          provider_id: row.provider_id,
          provider_name: row.provider_name,
          provider_endpoint_url: row.provider_endpoint_url,
          registered_at: DateTime.unsafeMake(row.registered_at)
        })
      )
    })

    /**
     * The live registrations listing this provider NPI with its name, reachable ones first, then the most
     * recently added: a provider who works for several organizations is found at the one that answers.
     */
    const findByNpi = Effect.fn("ProviderStore.findByNpi")(function*(providerNpi: string) {
      return yield* guard(sql<{ registration_id: string; provider_name: string | null }>`
        SELECT p.registration_id, p.provider_name FROM providers p
        JOIN neurons n ON n.registration_id = p.registration_id
        WHERE p.provider_npi = ${providerNpi} AND n.status <> 'deregistered'
        ORDER BY n.status = 'reachable' DESC, p.registered_at DESC LIMIT 1`)
    })

    /** Providers of live registrations. */
    const countLive = guard(sql<{ n: number }>`SELECT count(*) AS n FROM providers p
      JOIN neurons n ON n.registration_id = p.registration_id WHERE n.status <> 'deregistered'`).pipe(
      Effect.map(([row]) => row?.n ?? 0)
    )

    return { add, remove, list, findByNpi, countLive } as const
  }),
  accessors: false
}) {}
