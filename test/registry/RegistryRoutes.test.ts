import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { startRegistry, startRegistryWithServices, STORES } from "../support/registry.js"
import { call, heartbeat, npi, register, registration } from "./support.js"

const errorCode = (answer: { body: any }) => answer.body?.error?.code

for (const store of STORES) {
  describe(`Axon registry routes (${store})`, () => {
    it.scoped("POST /v1/neurons registers: 201 with id, 43-character bearer token, interval and ttl", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const answer = yield* call(url, "POST", "/v1/neurons", { body: registration(1, { heartbeat_interval_s: 20 }) })
        assert.strictEqual(answer.status, 201)
        assert.match(answer.body.registration_id, /^[0-9a-f-]{36}$/)
        assert.match(answer.body.bearer_token, /^[A-Za-z0-9_-]{43}$/)
        assert.deepInclude(answer.body, { status: "reachable", heartbeat_interval_s: 20, ttl_s: 60 })
        const defaulted = yield* register(url, 2)
        assert.strictEqual(defaulted.heartbeat_interval_s, 60)
      }))

    it.scoped("a duplicate NPI without enrollment is 409 ALREADY_REGISTERED and changes nothing", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const first = yield* register(url, 1)
        const again = yield* call(url, "POST", "/v1/neurons", { body: registration(1) })
        assert.strictEqual(again.status, 409)
        assert.strictEqual(errorCode(again), "ALREADY_REGISTERED")
        assert.strictEqual((yield* heartbeat(url, first.registration_id, first.bearer_token)).status, 200)
      }))

    it.scoped("enrollment: registering needs the token (401 without or wrong); re-registering rotates the token", () =>
      Effect.gen(function*() {
        const enrollment = "enroll-me-please"
        const { url } = yield* startRegistry({ store, enrollmentToken: enrollment })
        for (const token of [undefined, "wrong", "enroll-me-pleas", ""]) {
          const answer = yield* call(url, "POST", "/v1/neurons", {
            body: registration(1),
            ...(token === undefined ? {} : { token })
          })
          assert.strictEqual(answer.status, 401, String(token))
          assert.strictEqual(errorCode(answer), "UNAUTHORIZED")
        }
        const first = yield* register(url, 1, { enrollment })
        const second = yield* call(url, "POST", "/v1/neurons", {
          body: registration(1, { organization_name: "Renamed", heartbeat_interval_s: 30 }),
          token: enrollment
        })
        // Token rotation: same id, new token, 200; the old token stops working, the new one works.
        assert.strictEqual(second.status, 200)
        assert.strictEqual(second.body.registration_id, first.registration_id)
        assert.notStrictEqual(second.body.bearer_token, first.bearer_token)
        assert.deepInclude(second.body, { status: "reachable", heartbeat_interval_s: 30, ttl_s: 90 })
        assert.strictEqual((yield* heartbeat(url, first.registration_id, first.bearer_token)).status, 401)
        assert.strictEqual((yield* heartbeat(url, first.registration_id, second.body.bearer_token)).status, 200)
        const view = yield* call(url, "GET", `/v1/neurons/${first.registration_id}`, {
          token: second.body.bearer_token
        })
        assert.strictEqual(view.body.organization_name, "Renamed")
        // The endpoint a heartbeat names wins, also when it repeats a body sent before a re-registration moved it.
        const a = "https://a.example.org"
        yield* heartbeat(url, first.registration_id, second.body.bearer_token, a)
        yield* heartbeat(url, first.registration_id, second.body.bearer_token, a)
        const third = yield* call(url, "POST", "/v1/neurons", {
          body: registration(1, { neuron_endpoint_url: "https://b.example.org" }),
          token: enrollment
        })
        const endpoint = () =>
          Effect.map(
            call(url, "GET", `/v1/neurons/${first.registration_id}`, { token: third.body.bearer_token }),
            (answer) => answer.body.neuron_endpoint_url
          )
        assert.strictEqual(yield* endpoint(), "https://b.example.org")
        assert.strictEqual((yield* heartbeat(url, first.registration_id, third.body.bearer_token, a)).status, 200)
        assert.strictEqual(yield* endpoint(), a)
      }))

    it.scoped("GET /v1/neurons/{id} shows public fields only; heartbeat answers 200 reachable", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const reg = yield* register(url, 1)
        const beat = yield* heartbeat(url, reg.registration_id, reg.bearer_token, "wss://moved.example.org/ws")
        assert.strictEqual(beat.status, 200)
        assert.strictEqual(beat.body.status, "reachable")
        assert.isString(beat.body.last_heartbeat_at)
        const view = yield* call(url, "GET", `/v1/neurons/${reg.registration_id}`, { token: reg.bearer_token })
        assert.strictEqual(view.status, 200)
        assert.deepStrictEqual(Object.keys(view.body).sort(), [
          "last_heartbeat_at",
          "neuron_endpoint_url",
          "organization_name",
          "organization_npi",
          "organization_type",
          "registered_at",
          "registration_id",
          "status"
        ])
        assert.strictEqual(view.body.neuron_endpoint_url, "wss://moved.example.org/ws")
        assert.notInclude(view.text, reg.bearer_token)
      }))

    it.scoped("forged, empty, wrong-length, malformed and unknown tokens are 401; another neuron's token is 403", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const a = yield* register(url, 1)
        const b = yield* register(url, 2)
        const forged = a.bearer_token.slice(0, 42) + (a.bearer_token[42] === "A" ? "B" : "A")
        const path = `/v1/neurons/${a.registration_id}`
        const cases: Array<[string, Record<string, string>]> = [
          ["missing", {}],
          ["empty", { authorization: "Bearer " }],
          ["no scheme", { authorization: a.bearer_token }],
          ["basic", { authorization: `Basic ${a.bearer_token}` }],
          ["too short", { authorization: `Bearer ${a.bearer_token.slice(0, 42)}` }],
          ["too long", { authorization: `Bearer ${a.bearer_token}A` }],
          ["padded", { authorization: `Bearer ${a.bearer_token.slice(0, 42)}=` }],
          ["forged", { authorization: `Bearer ${forged}` }],
          ["unknown", { authorization: `Bearer ${"A".repeat(43)}` }]
        ]
        for (const [name, headers] of cases) {
          for (const [method, suffix] of [["GET", ""], ["GET", "/providers"], ["DELETE", ""]] as const) {
            const answer = yield* call(url, method, path + suffix, { headers })
            assert.strictEqual(answer.status, 401, `${name} ${method} ${suffix}`)
            assert.strictEqual(errorCode(answer), "UNAUTHORIZED")
          }
          assert.strictEqual(
            (yield* call(url, "PUT", path + "/endpoint", {
              headers,
              body: { neuron_endpoint_url: "https://x.example.org" }
            })).status,
            401,
            name
          )
        }
        const other = yield* heartbeat(url, a.registration_id, b.bearer_token)
        assert.strictEqual(other.status, 403)
        assert.strictEqual(errorCode(other), "FORBIDDEN")
        assert.strictEqual((yield* call(url, "GET", path, { token: b.bearer_token })).status, 403)
        // The failed attempts changed nothing: A is still there and answers to its own token.
        assert.strictEqual((yield* call(url, "GET", path, { token: a.bearer_token })).status, 200)
      }))

    it.scoped("providers: idempotent add (201 then 200, same id), list, idempotent remove (204)", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const reg = yield* register(url, 1)
        const path = `/v1/neurons/${reg.registration_id}/providers`
        const provider = {
          provider_npi: npi(500),
          provider_name: "Dr. Siobhán O'Connor",
          provider_types: ["physician"]
        }
        const first = yield* call(url, "POST", path, { token: reg.bearer_token, body: provider })
        assert.strictEqual(first.status, 201)
        assert.deepStrictEqual(first.body.status, "registered")
        const again = yield* call(url, "POST", path, { token: reg.bearer_token, body: provider })
        assert.strictEqual(again.status, 200)
        assert.strictEqual(again.body.provider_id, first.body.provider_id)
        const list = yield* call(url, "GET", path, { token: reg.bearer_token })
        assert.strictEqual(list.status, 200)
        assert.strictEqual(list.body.providers.length, 1)
        assert.deepInclude(list.body.providers[0], {
          provider_npi: npi(500),
          provider_id: first.body.provider_id,
          provider_name: "Dr. Siobhán O'Connor",
          provider_endpoint_url: null
        })
        assert.strictEqual((yield* call(url, "DELETE", `${path}/${npi(500)}`, { token: reg.bearer_token })).status, 204)
        assert.strictEqual((yield* call(url, "DELETE", `${path}/${npi(500)}`, { token: reg.bearer_token })).status, 204)
        assert.deepStrictEqual((yield* call(url, "GET", path, { token: reg.bearer_token })).body, { providers: [] })
        const other = yield* register(url, 2)
        assert.strictEqual((yield* call(url, "POST", path, { token: other.bearer_token, body: provider })).status, 403)
      }))

    it.scoped("discovery: GET /v1/registry/{npi} finds a provider or an organization; 404 when unknown", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const reg = yield* register(url, 1)
        yield* call(url, "POST", `/v1/neurons/${reg.registration_id}/providers`, {
          token: reg.bearer_token,
          body: { provider_npi: npi(77), provider_name: "Dr. Who" }
        })
        const provider = yield* call(url, "GET", `/v1/registry/${npi(77)}`)
        assert.strictEqual(provider.status, 200)
        assert.deepInclude(provider.body, {
          npi: npi(77),
          entity_type: "provider",
          name: "Dr. Who",
          organization_npi: npi(1),
          status: "reachable"
        })
        assert.deepInclude(provider.body.neuron_endpoint, {
          url: "https://neuron-1.example.org",
          health_status: "reachable"
        })
        const organization = yield* call(url, "GET", `/v1/registry/${npi(1)}`)
        assert.deepInclude(organization.body, { entity_type: "organization", name: "Clinic 1" })
        const unknown = yield* call(url, "GET", `/v1/registry/${npi(99)}`)
        assert.strictEqual(unknown.status, 404)
        assert.strictEqual(errorCode(unknown), "NOT_FOUND")
        assert.strictEqual((yield* call(url, "GET", "/v1/registry/1234567898")).status, 400)
      }))

    it.scoped("DELETE /v1/neurons/{id}: 204; its own token then answers 404 NOT_REGISTERED; discovery hides it", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const reg = yield* register(url, 1)
        yield* call(url, "POST", `/v1/neurons/${reg.registration_id}/providers`, {
          token: reg.bearer_token,
          body: { provider_npi: npi(77) }
        })
        const path = `/v1/neurons/${reg.registration_id}`
        assert.strictEqual((yield* call(url, "DELETE", path, { token: reg.bearer_token })).status, 204)
        for (const [method, suffix] of [["GET", ""], ["DELETE", ""], ["GET", "/providers"]] as const) {
          const answer = yield* call(url, method, path + suffix, { token: reg.bearer_token })
          assert.strictEqual(answer.status, 404, method + suffix)
          assert.strictEqual(errorCode(answer), "NOT_REGISTERED")
        }
        const beat = yield* heartbeat(url, reg.registration_id, reg.bearer_token)
        assert.strictEqual(beat.status, 404)
        assert.strictEqual((yield* call(url, "GET", `/v1/registry/${npi(77)}`)).status, 404)
        assert.strictEqual((yield* call(url, "GET", `/v1/registry/${npi(1)}`)).status, 404)
        assert.deepStrictEqual((yield* call(url, "GET", "/v1/neurons")).body.neurons, [])
        // Registering the NPI again registers it afresh: a new id and token, no old providers.
        const fresh = yield* call(url, "POST", "/v1/neurons", { body: registration(1) })
        assert.strictEqual(fresh.status, 201)
        assert.notStrictEqual(fresh.body.registration_id, reg.registration_id)
        const providers = yield* call(url, "GET", `/v1/neurons/${fresh.body.registration_id}/providers`, {
          token: fresh.body.bearer_token
        })
        assert.deepStrictEqual(providers.body, { providers: [] })
        assert.strictEqual((yield* heartbeat(url, reg.registration_id, reg.bearer_token)).status, 404)
      }))

    it.scoped("GET /v1/neurons: filters by organization and status, cursor pagination, public fields only", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistry({ store })
        const tokens: Array<string> = []
        for (let n = 1; n <= 5; n++) tokens.push((yield* register(url, n)).bearer_token)
        const seen: Array<string> = []
        let cursor: string | null = null
        let pages = 0
        do {
          const query: string = cursor === null ? "?limit=2" : `?limit=2&cursor=${cursor}`
          const page = yield* call(url, "GET", `/v1/neurons${query}`)
          assert.strictEqual(page.status, 200)
          for (const token of tokens) assert.notInclude(page.text, token)
          for (const neuron of page.body.neurons) {
            assert.notProperty(neuron, "bearer_token")
            seen.push(neuron.organization_npi)
          }
          cursor = page.body.next_cursor
          pages++
        } while (cursor !== null)
        assert.strictEqual(pages, 3)
        assert.deepStrictEqual(seen, [1, 2, 3, 4, 5].map(npi))
        const one = yield* call(url, "GET", `/v1/neurons?organization_npi=${npi(3)}`)
        assert.deepStrictEqual(one.body.neurons.map((n: any) => n.organization_npi), [npi(3)])
        assert.strictEqual((yield* call(url, "GET", "/v1/neurons?status=down")).body.neurons.length, 0)
        assert.strictEqual((yield* call(url, "GET", "/v1/neurons?status=reachable")).body.neurons.length, 5)
        const badCursor = yield* call(url, "GET", "/v1/neurons?cursor=not-a-cursor")
        assert.strictEqual(badCursor.status, 400)
        assert.match(badCursor.body.error.message, /^cursor: /)
        for (const bad of ["limit=0", "limit=501", "limit=abc", "status=gone", "organization_npi=1234567898"]) {
          const answer = yield* call(url, "GET", `/v1/neurons?${bad}`)
          assert.strictEqual(answer.status, 400, bad)
          assert.match(answer.body.error.message, new RegExp(`^${bad.split("=")[0]}: `))
        }
      }))

    it.scoped("/health counts neurons at most once a second (a load balancer's polls do not each scan the table); /stats counts on every call", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store })
        yield* register(url, 1)
        assert.strictEqual((yield* call(url, "GET", "/health")).body.neurons, 1)
        yield* register(url, 2)
        // Within the second (the registry runs on this test's Clock): the count just taken.
        assert.strictEqual((yield* call(url, "GET", "/health")).body.neurons, 1)
        assert.strictEqual((yield* call(url, "GET", "/stats")).body.total_neurons, 2)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* call(url, "GET", "/health")).body.neurons, 2)
      }))

    it.scoped("/health, /stats and /alerts answer; /openapi.json documents the API; unknown routes are 404", () =>
      Effect.gen(function*() {
        const { url } = yield* startRegistryWithServices({ store })
        const a = yield* register(url, 1)
        yield* register(url, 2)
        yield* call(url, "POST", `/v1/neurons/${a.registration_id}/providers`, {
          token: a.bearer_token,
          body: { provider_npi: npi(9) }
        })
        const health = yield* call(url, "GET", "/health")
        assert.strictEqual(health.status, 200)
        assert.deepInclude(health.body, { status: "ok", neurons: 2 })
        const stats = yield* call(url, "GET", "/stats")
        assert.deepStrictEqual(stats.body, {
          total_neurons: 2,
          reachable_neurons: 2,
          down_neurons: 0,
          total_providers: 1,
          last_sweep_at: null
        })
        const alerts = yield* call(url, "GET", "/alerts?limit=5")
        assert.deepStrictEqual(alerts.body, { alerts: [] })
        assert.strictEqual((yield* call(url, "GET", "/alerts?limit=0")).status, 400)
        assert.strictEqual((yield* call(url, "GET", "/alerts?since=yesterday")).status, 400)
        const openapi = yield* call(url, "GET", "/openapi.json")
        assert.strictEqual(openapi.status, 200)
        assert.property(openapi.body.paths, "/v1/neurons/{registration_id}/endpoint")
        for (const [method, path] of [["GET", "/nope"], ["GET", "/v1"], ["PATCH", "/v1/neurons"]] as const) {
          const answer = yield* call(url, method, path)
          assert.strictEqual(answer.status, 404, path)
          assert.deepStrictEqual(answer.body, { error: { code: "NOT_FOUND", message: "no such route" } })
        }
      }))
  })
}
