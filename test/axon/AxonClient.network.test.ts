/**
 * The client on a real network: time-outs, unreachable registries, failover across `AXON_REGISTRY_URL`, 4xx never
 * retried (requests counted on real servers), undecodable answers, and no token in any error or log line.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Inspectable from "effect/Inspectable"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { AxonError } from "../../src/axon/AxonError.js"
import type { Npi } from "../../src/domain/Npi.js"
import { startPublicAxon } from "../support/publicAxon.js"
import { closedPortUrl, makeClient, neuron, startFixedServer, startServer, startSilentServer } from "./support.js"

const someRegistration = { registration_id: "r-1", bearer_token: Redacted.make("tok-1234567890") }

const httpClients = [["NodeHttpClient", NodeHttpClient.layer], ["FetchHttpClient", FetchHttpClient.layer]] as const

describe("AxonClient time limit and unreachable registries", () => {
  for (const [name, httpClient] of httpClients) {
    it.live(`timeout: a registry that never answers fails with reason timeout (${name})`, () =>
      Effect.gen(function*() {
        const silent = yield* startSilentServer()
        const client = yield* makeClient([silent.url], { timeout: "200 millis", httpClient })
        const error = yield* Effect.flip(client.registerNeuron(neuron))
        assert.strictEqual(error.reason, "timeout")
        assert.strictEqual(error.operation, "register")
        assert.strictEqual(error.url, silent.url)
        assert.isUndefined(error.status)
        assert.strictEqual(yield* silent.count, 1)
      }).pipe(Effect.scoped))

    it.scoped(`unreachable: a closed port fails with reason unreachable and the system error (${name})`, () =>
      Effect.gen(function*() {
        const closed = yield* closedPortUrl
        const client = yield* makeClient([closed], { httpClient })
        const error = yield* Effect.flip(client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url))
        assert.strictEqual(error.reason, "unreachable")
        assert.strictEqual(error.url, closed)
        assert.include(error.message, "ECONNREFUSED")
      }))
  }
})

describe("AxonClient failover", () => {
  it.scoped("failover: first URL a closed port, second a registry: succeeds there, and later calls stay there", () =>
    Effect.gen(function*() {
      const closed = yield* closedPortUrl
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([closed, axon.url])
      assert.strictEqual(yield* client.currentUrl, closed)
      const reg = yield* client.registerNeuron(neuron)
      assert.strictEqual(reg.axonUrl, axon.url)
      assert.strictEqual(yield* client.currentUrl, axon.url)
      yield* client.updateEndpoint(reg, neuron.neuron_endpoint_url)
      assert.strictEqual(yield* client.currentUrl, axon.url)
      assert.strictEqual((yield* axon.requests).length, 2)
    }))

  it.scoped("failover on 5xx tries each URL once per call, then stays on the one that answered", () =>
    Effect.gen(function*() {
      const failing = yield* startFixedServer(503, { error: { code: "SERVER_ERROR", message: "maintenance" } })
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([failing.url, axon.url])
      const reg = yield* client.registerNeuron(neuron)
      yield* client.updateEndpoint(reg, neuron.neuron_endpoint_url)
      yield* client.updateEndpoint(reg, neuron.neuron_endpoint_url)
      assert.strictEqual(yield* failing.count, 1)
      assert.strictEqual((yield* axon.requests).length, 3)
    }))

  it.live("failover on a time-out moves to the next URL within the same call", () =>
    Effect.gen(function*() {
      const silent = yield* startSilentServer()
      const axon = yield* startPublicAxon()
      const client = yield* makeClient([silent.url, axon.url], { timeout: "200 millis" })
      const reg = yield* client.registerNeuron(neuron)
      assert.strictEqual(reg.axonUrl, axon.url)
      assert.strictEqual(yield* silent.count, 1)
    }).pipe(Effect.scoped))

  it.scoped("round-robin: when the current registry fails, the next one (wrapping around) takes over", () =>
    Effect.gen(function*() {
      let aUp = false
      let bUp = true
      const answer = (up: boolean) => (): readonly [number, unknown] =>
        up ? [200, { status: "reachable" }] : [502, "<html>bad gateway</html>"]
      const a = yield* startServer(() => answer(aUp)())
      const b = yield* startServer(() => answer(bUp)())
      const client = yield* makeClient([a.url, b.url])
      yield* client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url)
      assert.strictEqual(yield* client.currentUrl, b.url)
      aUp = true
      bUp = false
      yield* client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url)
      assert.strictEqual(yield* client.currentUrl, a.url)
      assert.deepStrictEqual([yield* a.count, yield* b.count], [2, 2])
    }))

  it.scoped("when every URL fails, the error says so and the current URL does not move", () =>
    Effect.gen(function*() {
      const first = yield* startFixedServer(500, { error: "Internal server error" })
      const second = yield* closedPortUrl
      const client = yield* makeClient([first.url, second])
      const error = yield* Effect.flip(client.registerNeuron(neuron))
      assert.strictEqual(error.reason, "unreachable")
      assert.include(error.message, "all 2 registry URLs failed")
      assert.strictEqual(yield* client.currentUrl, first.url)
    }))

  it.scoped("4xx not retried and no failover: one request, at the first registry only", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [number, string]> = [
        [400, "rejected"],
        [401, "unauthorized"],
        [404, "not_registered"],
        [409, "rejected"]
      ]
      for (const [status, reason] of cases) {
        const refusing = yield* startFixedServer(status, { error: { code: "X", message: "no" } })
        const spare = yield* startPublicAxon()
        const client = yield* makeClient([refusing.url, spare.url])
        const error = yield* Effect.flip(client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url))
        assert.strictEqual(error.reason, reason, String(status))
        assert.strictEqual(error.status, status)
        assert.strictEqual(yield* refusing.count, 1)
        assert.strictEqual((yield* spare.requests).length, 0)
        assert.strictEqual(yield* client.currentUrl, refusing.url)
      }
    }))

  it.scoped("a 4xx from the second registry after failover moves the client there (the registration is lost)", () =>
    Effect.gen(function*() {
      const closed = yield* closedPortUrl
      const other = yield* startPublicAxon()
      const client = yield* makeClient([closed, other.url])
      // The registration belongs to the first registry: the second does not know it and answers 401.
      const error = yield* Effect.flip(client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url))
      assert.strictEqual(error.reason, "unauthorized")
      assert.strictEqual(yield* client.currentUrl, other.url)
      // The engine then registers again, where the client now is.
      const reg = yield* client.registerNeuron(neuron)
      assert.strictEqual(reg.axonUrl, other.url)
    }))

  it.scoped("an undecodable success is reported, not retried elsewhere", () =>
    Effect.gen(function*() {
      const odd = yield* startFixedServer(201, { registration_id: "has spaces", bearer_token: "t" })
      const spare = yield* startPublicAxon()
      const client = yield* makeClient([odd.url, spare.url])
      const error = yield* Effect.flip(client.registerNeuron(neuron))
      assert.strictEqual(error.reason, "undecodable")
      assert.strictEqual(error.status, 201)
      assert.include(error.message, "registration_id")
      assert.strictEqual((yield* spare.requests).length, 0)
      const notJson = yield* startFixedServer(200, "<html>hello</html>")
      const client2 = yield* makeClient([notJson.url])
      const error2 = yield* Effect.flip(client2.updateEndpoint(someRegistration, neuron.neuron_endpoint_url))
      assert.strictEqual(error2.reason, "undecodable")
    }))
})

describe("AxonClient against a hostile registry", () => {
  // A registry that answers JSON nested 100 000 deep (in a field the client reads, in one it ignores, and as the
  // whole body) or an array of a million elements: every call fails as an AxonError (undecodable), never a
  // defect (a stack overflow in a parser or a decoder would be one), and the process carries on.
  const deep = (depth: number, leaf: string) => "[".repeat(depth) + leaf + "]".repeat(depth)
  const answers: ReadonlyArray<readonly [string, string]> = [
    ["the whole body nested 100 000 deep", deep(100_000, "1")],
    ["registration_id nested 100 000 deep", `{"registration_id":${deep(100_000, "\"r\"")},"bearer_token":"t"}`],
    [
      "an unknown field nested 100 000 deep",
      `{"registration_id":"r-1","bearer_token":"t","extra":${deep(100_000, "0")},"providers":${deep(100_000, "0")}}`
    ],
    ["a million-element array", `[${Array.from({ length: 1_000_000 }, () => "0").join(",")}]`]
  ]
  for (const [what, body] of answers) {
    it.scoped(`deeply nested JSON: ${what} is an AxonError for every call, never a defect`, () =>
      Effect.gen(function*() {
        const hostile = yield* startFixedServer(200, body)
        const client = yield* makeClient([hostile.url])
        const calls: ReadonlyArray<Effect.Effect<unknown, AxonError>> = [
          client.registerNeuron(neuron),
          client.updateEndpoint(someRegistration, neuron.neuron_endpoint_url),
          client.registerProvider(someRegistration, { provider_npi: "1558598797" } as never),
          client.listProviders(someRegistration)
        ]
        for (const call of calls) {
          const exit = yield* Effect.exit(call)
          if (exit._tag === "Success") continue // an answer the call does not read (no body expected)
          const failure = Cause.failureOption(exit.cause)
          assert.isTrue(failure._tag === "Some", `a typed failure, not ${Cause.pretty(exit.cause).slice(0, 300)}`)
          assert.instanceOf(failure._tag === "Some" ? failure.value : undefined, AxonError)
        }
        // Some call must have read the body: a test that cannot fail is a defect.
        const error = yield* Effect.flip(client.registerNeuron(neuron))
        assert.strictEqual(error.reason, "undecodable")
        assert.isBelow(error.message.length, 2_000)
      }))
  }
})

describe("AxonClient secrets", () => {
  it.scoped("the bearer token never appears in an AxonError's message/fields or in captured logs", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.replace(
        Logger.defaultLogger,
        Logger.make((options) => void lines.push(Logger.logfmtLogger.log(options)))
      )
      // A hostile registry that echoes the Authorization header in its errors, on every status class.
      const echo = (status: number) =>
        startServer((req) => [status, { error: `you sent ${req.headers.authorization ?? "nothing"}` }])
      const token = "s3cret-bearer-token-0123456789"
      const enrollment = "s3cret-enrollment-token-98765"
      const ref = { registration_id: "r-1", bearer_token: Redacted.make(token) }
      const closed = yield* closedPortUrl

      const errors = yield* Effect.gen(function*() {
        const errors: Array<AxonError> = []
        for (const status of [400, 401, 404, 409, 500]) {
          const server = yield* echo(status)
          // A closed port first, so that failover logs are part of what is checked.
          const client = yield* makeClient([closed, server.url], { enrollmentToken: enrollment })
          errors.push(yield* Effect.flip(client.updateEndpoint(ref, neuron.neuron_endpoint_url)))
          // (A 409 on a provider add means "already registered": a success, not an error.)
          const added = yield* Effect.either(client.registerProvider(ref, { provider_npi: "1234567802" as Npi }))
          if (added._tag === "Left") errors.push(added.left)
          errors.push(yield* Effect.flip(client.registerNeuron(neuron)))
          // The tokens were sent: the server saw them.
          const seen = (yield* server.authorizations).join(" ")
          assert.include(seen, token)
          assert.include(seen, enrollment)
        }
        for (const error of errors) {
          yield* Effect.logError("axon call failed", Cause.fail(error)).pipe(Effect.annotateLogs({ error }))
        }
        return errors
      }).pipe(Effect.provide(capture), Logger.withMinimumLogLevel(LogLevel.All))

      const texts = errors.flatMap((e) => [
        e.message,
        String(e),
        JSON.stringify(e),
        Inspectable.format(e),
        JSON.stringify(Schema.encodeSync(AxonError)(e)),
        Cause.pretty(Cause.fail(e))
      ])
      // The echo was there, and was scrubbed; the client's own failover logs were captured too.
      assert.isTrue(errors.some((e) => e.message.includes("you sent Bearer [redacted]")))
      assert.isTrue(lines.some((line) => line.includes("Axon registry failover")))
      for (const text of [...texts, ...lines]) {
        assert.notInclude(text, token)
        assert.notInclude(text, enrollment)
      }
    }))
})
