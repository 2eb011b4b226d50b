/**
 * A stand-in for the public CareAgent Axon registry (careagent/axon, `src/server/index.ts`), answering the
 * Neuron-facing routes the way that server does, so the Neuron's client can be tested against a third-party
 * registry without the network. What it copies is the observable behaviour (docs/axon-client.md):
 * - error bodies are `{"error":"text"}`; unknown routes (a provider listing, a deregistration) `404 {"error":"Not found"}`;
 * - `POST /v1/neurons` answers `201 {registration_id, bearer_token, status}` (no interval, no TTL), and `400` with
 *   `NPI "..." is already registered` for an NPI it knows, with or without a token;
 * - neuron routes answer `401 {"error":"Unauthorized"}` for a missing or unknown token, never `404`;
 * - the heartbeat answers `200 {status: "reachable"}` (no `last_heartbeat_at`);
 * - a provider add answers `201 {provider_id: <npi>, status}`, `400` "already registered" for a known NPI, `400` for a
 *   provider type outside its taxonomy, and the remove is a `204` no-op.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { randomBytes, randomUUID } from "node:crypto"
import * as Http from "node:http"
import { listenScoped } from "./http.js"

/** Provider types of the public Axon's taxonomy that tests use (a subset). */
export const PUBLIC_AXON_PROVIDER_TYPES = ["physician", "nursing", "pharmacy", "dental"]

/** One request the stand-in received (never the token itself). */
export interface PublicAxonRequest {
  readonly method: string
  readonly path: string
  readonly status: number
}

/** A running stand-in. */
export interface PublicAxon {
  readonly url: string
  /** The requests it answered, in order. */
  readonly requests: Effect.Effect<ReadonlyArray<PublicAxonRequest>>
  /** Loses every issued token while keeping the registered NPIs (as after losing its token file). */
  readonly forgetTokens: Effect.Effect<void>
}

const readBody = (req: Http.IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf-8")))
    req.on("error", reject)
  })

/** Starts the stand-in on `127.0.0.1`, port 0, for the life of the scope. */
export const startPublicAxon = (): Effect.Effect<PublicAxon, never, Scope.Scope> =>
  Effect.gen(function*() {
    const npis = new Set<string>()
    const tokens = new Map<string, { npi: string; token: string }>()
    const log: Array<PublicAxonRequest> = []

    const handle = async (req: Http.IncomingMessage): Promise<[number, unknown]> => {
      const path = new URL(req.url ?? "/", "http://x").pathname
      const auth = req.headers.authorization
      const authenticated = (id: string) => {
        const record = tokens.get(id)
        return record !== undefined && auth === `Bearer ${record.token}`
      }
      const json = async (): Promise<any> => JSON.parse(await readBody(req))

      if (req.method === "POST" && path === "/v1/neurons") {
        let body: any
        try {
          body = await json()
        } catch {
          return [400, { error: "Invalid JSON" }]
        }
        const npi = String(body.organization_npi)
        if (!/^[12]\d{9}$/.test(npi)) return [400, { error: `Invalid NPI: "${npi}"` }]
        if (npis.has(npi)) return [400, { error: `NPI "${npi}" is already registered` }]
        npis.add(npi)
        const registration_id = randomUUID()
        const token = randomBytes(32).toString("base64url")
        tokens.set(registration_id, { npi, token })
        return [201, { registration_id, bearer_token: token, status: "reachable" }]
      }
      const endpoint = path.match(/^\/v1\/neurons\/([^/]+)\/endpoint$/)
      if (req.method === "PUT" && endpoint) {
        if (!authenticated(endpoint[1]!)) return [401, { error: "Unauthorized" }]
        try {
          await json()
        } catch {
          return [400, { error: "Invalid JSON" }]
        }
        return [200, { status: "reachable" }]
      }
      const providers = path.match(/^\/v1\/neurons\/([^/]+)\/providers$/)
      if (req.method === "POST" && providers) {
        if (!authenticated(providers[1]!)) return [401, { error: "Unauthorized" }]
        let body: any
        try {
          body = await json()
        } catch {
          return [400, { error: "Invalid JSON" }]
        }
        const npi = String(body.provider_npi)
        if (npis.has(npi)) return [400, { error: `NPI "${npi}" is already registered` }]
        if (!Array.isArray(body.provider_types)) return [400, { error: "registration.provider_types is not iterable" }]
        for (const t of body.provider_types) {
          if (!PUBLIC_AXON_PROVIDER_TYPES.includes(t)) {
            return [400, { error: `Invalid provider type: "${t}" is not in the taxonomy` }]
          }
        }
        npis.add(npi)
        return [201, { provider_id: npi, status: "registered" }]
      }
      const remove = path.match(/^\/v1\/neurons\/([^/]+)\/providers\/([^/]+)$/)
      if (req.method === "DELETE" && remove) {
        if (!authenticated(remove[1]!)) return [401, { error: "Unauthorized" }]
        return [204, undefined]
      }
      return [404, { error: "Not found" }]
    }

    const server = Http.createServer((req, res) => {
      handle(req).then(
        ([status, body]) => {
          log.push({ method: req.method ?? "", path: new URL(req.url ?? "/", "http://x").pathname, status })
          if (body === undefined) {
            res.writeHead(status).end()
          } else {
            const text = JSON.stringify(body)
            res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) })
            res.end(text)
          }
        },
        () => res.writeHead(500, { "Content-Type": "application/json" }).end(`{"error":"Internal server error"}`)
      )
    })
    const url = yield* listenScoped(server)
    return {
      url,
      requests: Effect.sync(() => [...log]),
      forgetTokens: Effect.sync(() => tokens.clear())
    }
  })
