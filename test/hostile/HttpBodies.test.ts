/**
 * Hostile input through the real servers (issue 10): random and malformed bodies, paths and query strings sent
 * over real sockets to the real registry and to a whole Neuron's admin API. Each answer is `400 INVALID_REQUEST`
 * naming a field, or a 2xx when the body is valid (the Schema says which); never a 500; both processes keep serving.
 */
import { assert, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { RelationshipParams } from "../../src/api/NeuronApi.js"
import { HeartbeatRequest, RegisterNeuronRequest, RegisterProviderRequest } from "../../src/protocol/AxonApi.js"
import { bodyOf, hostileString, hostileText } from "../support/hostile.js"
import { type Answer, call, npiOf } from "../support/http.js"
import { startNeuron } from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

const fc = FastCheck

/** The servers under test: one registry with one registration, and a whole Neuron registered with it. */
class Servers extends Context.Tag("test/HostileServers")<Servers, {
  readonly registry: string
  readonly neuron: string
  readonly registrationId: string
  readonly token: string
}>() {}

const ServersLive = Layer.scoped(
  Servers,
  Effect.gen(function*() {
    const registry = yield* startRegistry()
    const registered = yield* call(registry.url, "POST", "/v1/neurons", {
      body: {
        organization_npi: npiOf(1),
        organization_name: "Fuzzed Clinic",
        organization_type: "practice",
        neuron_endpoint_url: "https://fuzzed.example.org"
      }
    })
    const neuron = yield* startNeuron({ registryUrls: [registry.url] })
    return {
      registry: registry.url,
      neuron: neuron.url,
      registrationId: registered.body.registration_id,
      token: registered.body.bearer_token
    }
  })
)

/** A body as sent: a JSON value serialised, or raw text (often not JSON). */
type Sent = { readonly json: unknown } | { readonly raw: string }

const sent: (schema: Schema.Schema<any, any>) => FastCheck.Arbitrary<Sent> = (schema) =>
  fc.oneof(
    { weight: 4, arbitrary: bodyOf(schema).map((json): Sent => ({ json })) },
    { weight: 1, arbitrary: hostileText.map((raw): Sent => ({ raw })) }
  )

const send = (url: string, method: string, path: string, body: Sent, token?: string) =>
  call(url, method, path, {
    ...("raw" in body ? { raw: body.raw } : { raw: JSON.stringify(body.json) ?? "" }),
    ...(token === undefined ? {} : { token })
  })

/** What the Schema says of the body: valid (a 2xx is due) or not (a 400 is due). */
const isValid = (schema: Schema.Schema<any, any>, body: Sent): boolean => {
  let value: unknown
  try {
    value = "raw" in body ? JSON.parse(body.raw) : JSON.parse(JSON.stringify(body.json) ?? "")
  } catch {
    return false
  }
  return Either.isRight(Schema.decodeUnknownEither(schema)(value))
}

/** Never a 5xx; a 400 is INVALID_REQUEST naming a field of `fields` (or the body); else one of `ok`. */
const assertAnswer = (
  answer: Answer,
  expected: { readonly valid: boolean; readonly fields: ReadonlyArray<string>; readonly ok: ReadonlyArray<number> }
) => {
  const label = `${answer.status} ${answer.text.slice(0, 300)}`
  assert.isBelow(answer.status, 500, label)
  if (!expected.valid) {
    assert.strictEqual(answer.status, 400, label)
  }
  if (answer.status === 400) {
    assert.strictEqual(answer.body?.error?.code, "INVALID_REQUEST", label)
    const named = String(answer.body.error.message).split(/[:.]/)[0]!
    assert.include([...expected.fields, "body"], named, label)
  } else {
    assert.include(expected.ok, answer.status, label)
  }
}

/** Percent-encodes every UTF-8 byte of `s` (a lone surrogate becomes U+FFFD, as any client would send it). */
const pathPart = (s: string): string =>
  Array.from(Buffer.from(s, "utf8"), (b) => "%" + b.toString(16).padStart(2, "0")).join("")

const fieldsOf = (schema: { readonly fields: Record<string, unknown> }) => Object.keys(schema.fields)

layer(ServersLive, { excludeTestServices: true })("hostile input through the real servers", (it) => {
  it.effect.prop("registry: POST /v1/neurons with random bodies is 400 naming a field, or 201/409, never 500", [
    sent(RegisterNeuronRequest)
  ], ([body]) =>
    Effect.gen(function*() {
      const { registry } = yield* Servers
      const answer = yield* send(registry, "POST", "/v1/neurons", body)
      // 409: a valid body whose NPI an earlier run registered (development mode).
      assertAnswer(answer, {
        valid: isValid(RegisterNeuronRequest, body),
        fields: fieldsOf(RegisterNeuronRequest),
        ok: [201, 409]
      })
    }))

  it.effect.prop("registry: heartbeats with random bodies are 400 naming a field, or 200, never 500", [
    sent(HeartbeatRequest)
  ], ([body]) =>
    Effect.gen(function*() {
      const { registrationId, registry, token } = yield* Servers
      const answer = yield* send(registry, "PUT", `/v1/neurons/${registrationId}/endpoint`, body, token)
      assertAnswer(answer, { valid: isValid(HeartbeatRequest, body), fields: fieldsOf(HeartbeatRequest), ok: [200] })
    }))

  it.effect.prop("registry: provider adds with random bodies are 400 naming a field, or 201/200, never 500", [
    sent(RegisterProviderRequest)
  ], ([body]) =>
    Effect.gen(function*() {
      const { registrationId, registry, token } = yield* Servers
      const answer = yield* send(registry, "POST", `/v1/neurons/${registrationId}/providers`, body, token)
      assertAnswer(answer, {
        valid: isValid(RegisterProviderRequest, body),
        fields: fieldsOf(RegisterProviderRequest),
        ok: [200, 201]
      })
    }))

  it.effect.prop(
    "registry: random path segments and query strings are 4xx, never 500",
    [hostileString, hostileString],
    (
      [segment, query]
    ) =>
      Effect.gen(function*() {
        const { registry, token } = yield* Servers
        const part = pathPart(segment)
        const q = pathPart(query)
        for (
          const [method, path] of [
            ["GET", `/v1/registry/${part}`],
            ["GET", `/v1/neurons/${part}`],
            ["PUT", `/v1/neurons/${part}/endpoint`],
            ["DELETE", `/v1/neurons/${part}/providers/${part}`],
            ["GET", `/v1/neurons?organization_npi=${q}&status=${q}&limit=${q}&cursor=${q}`],
            ["GET", `/alerts?since=${q}&limit=${q}`]
          ] as const
        ) {
          const answer = yield* call(registry, method, path, {
            token,
            ...(method === "PUT" ? { body: { neuron_endpoint_url: "https://x.example.org" } } : {})
          })
          const label = `${method} ${path.slice(0, 100)}: ${answer.status} ${answer.text.slice(0, 200)}`
          assert.isBelow(answer.status, 500, label)
          // 431: a request line over Node's 16 KiB header limit, refused by Node's parser before the registry sees it.
          if (answer.status >= 400 && answer.status !== 431) assert.isString(answer.body?.error?.code, label)
        }
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect.prop("Neuron admin API: POST /v1/providers with random bodies is 400 naming a field, or 201/202", [
    sent(RegisterProviderRequest)
  ], ([body]) =>
    Effect.gen(function*() {
      const { neuron } = yield* Servers
      const answer = yield* send(neuron, "POST", "/v1/providers", body)
      assertAnswer(answer, {
        valid: isValid(RegisterProviderRequest, body),
        fields: fieldsOf(RegisterProviderRequest),
        ok: [201, 202]
      })
    }))

  it.effect.prop("Neuron admin API: random provider paths and relationship queries are 4xx or 2xx, never 500", [
    hostileString,
    fc.record({ patient_agent_id: hostileString, provider_npi: hostileString }, { requiredKeys: [] })
  ], ([segment, params]) =>
    Effect.gen(function*() {
      const { neuron } = yield* Servers
      const removal = yield* call(neuron, "DELETE", `/v1/providers/${pathPart(segment)}`)
      // 431: a path over Node's 16 KiB header limit, refused by Node's parser.
      assert.include([202, 204, 400, 404, 431], removal.status, removal.text)
      const query = new URLSearchParams(params as Record<string, string>).toString()
      const listed = yield* call(neuron, "GET", `/v1/relationships?${query}`)
      const valid = Either.isRight(Schema.decodeUnknownEither(RelationshipParams)(params))
      assertAnswer(listed, { valid, fields: Object.keys(RelationshipParams.fields), ok: [200] })
    }))

  it.effect("after the fuzzing both processes still serve: registry and Neuron healthy, a valid provider added", () =>
    Effect.gen(function*() {
      const { neuron, registry } = yield* Servers
      assert.strictEqual((yield* call(registry, "GET", "/health")).status, 200)
      assert.strictEqual((yield* call(neuron, "GET", "/health")).status, 200)
      const added = yield* call(neuron, "POST", "/v1/providers", {
        body: { provider_npi: npiOf(424242), provider_name: "Dr. After Fuzz" }
      })
      assert.include([201, 202], added.status, added.text)
    }))
})
