/**
 * Traces over OTLP/HTTP: a receiver in this process (a node:http server on port 0 accepting `/v1/traces`) gets the
 * spans of a real Neuron configured by the OTEL_* variables: one handshake's, and the registry calls, lifecycle
 * transitions and admin requests around it, with no secret anywhere in what was exported. Protobuf is the default
 * protocol; with no endpoint configured there is no exporter.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Tracer from "effect/Tracer"
import * as Http from "node:http"
import { handshake, handshakeUrl } from "../../src/careagent/CareAgentClient.js"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import * as Tracing from "../../src/observability/Tracing.js"
import { listenScoped } from "../support/http.js"
import {
  assertNoSecret,
  call,
  npiOf,
  readHealthFile,
  readRecords,
  startNeuron,
  waitFor,
  waitUntil
} from "../support/neuron.js"
import { startRegistry, startRegistryWithServices } from "../support/registry.js"

const ENROLLMENT = "enroll-7c2e9b4a1f6d3085"
const ADMIN = "admin-5a9e3c1b7d2f4068"

interface Received {
  readonly path: string
  readonly contentType: string
  readonly body: Buffer
}

/** An OTLP/HTTP receiver: keeps every POST and answers 200 `{}` as a collector does. */
const startReceiver = Effect.gen(function*() {
  const received: Array<Received> = []
  const server = Http.createServer((request, response) => {
    const parts: Array<Buffer> = []
    request.on("data", (part: Buffer) => parts.push(part))
    request.on("end", () => {
      received.push({
        path: request.url ?? "",
        contentType: request.headers["content-type"] ?? "",
        body: Buffer.concat(parts)
      })
      response.writeHead(200, { "content-type": "application/json" })
      response.end("{}")
    })
  })
  const url = yield* listenScoped(server)
  return { url, received }
})

interface ExportedSpan {
  readonly name: string
  readonly attributes: Record<string, unknown>
}

/** The spans of every JSON export received. */
const spansOf = (received: ReadonlyArray<Received>): Array<ExportedSpan> =>
  received.filter((r) => r.path === "/v1/traces" && r.contentType.includes("json")).flatMap((r) =>
    (JSON.parse(r.body.toString("utf8")).resourceSpans as Array<any>).flatMap((rs) =>
      (rs.scopeSpans as Array<any>).flatMap((ss) =>
        (ss.spans as Array<any>).map((span) => ({
          name: span.name as string,
          attributes: Object.fromEntries(
            (span.attributes as Array<any>).map((a) => [a.key, Object.values(a.value ?? {})[0]])
          )
        }))
      )
    )
  )

/** The tracer the OTEL_* `variables` configure, its exporter (and HTTP client) living as long as the test. */
const tracerFor = (variables: Record<string, string>) =>
  Effect.gen(function*() {
    const client = yield* Layer.build(NodeHttpClient.layerUndici)
    const settings = yield* Tracing.config("neuron").pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))
    )
    return yield* Option.match(settings, {
      onNone: () => Effect.succeed(Option.none()),
      onSome: (s) => Effect.map(Tracing.make(s), Option.some).pipe(Effect.provide(client))
    })
  }).pipe(Effect.orDie)

describe("Tracing over OTLP/HTTP", () => {
  it.scopedLive(
    "traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, an in-process OTLP receiver gets the span of one handshake, the registry calls, the lifecycle transitions and the admin requests, with no secret in any attribute",
    () =>
      Effect.gen(function*() {
        const receiver = yield* startReceiver
        const tracer = yield* tracerFor({
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json"
        })
        assert.isTrue(Option.isSome(tracer))
        const registry = yield* startRegistryWithServices({ enrollmentToken: ENROLLMENT })
        const neuron = yield* startNeuron({
          registryUrls: [registry.url],
          overrides: {
            enrollmentToken: Option.some(Redacted.make(ENROLLMENT)),
            adminToken: Option.some(Redacted.make(ADMIN))
          }
        }).pipe(Effect.withTracer(Option.getOrThrow(tracer)))
        yield* waitUntil("healthy", Effect.map(call(neuron.url, "GET", "/health"), (a) => a.body?.status === "healthy"))
        const provider = npiOf(401)
        assert.strictEqual(
          (yield* call(neuron.url, "POST", "/v1/providers", { token: ADMIN, body: { provider_npi: provider } })).status,
          201
        )
        const made = yield* call(neuron.url, "POST", "/v1/api-keys", {
          token: ADMIN,
          body: { name: "traced", scope: "read" }
        })
        const apiKey: string = made.body.key
        assert.strictEqual(
          (yield* call(neuron.url, "GET", "/v1/status", { headers: { "x-api-key": apiKey } })).status,
          200
        )

        const done = yield* handshake({
          url: handshakeUrl(neuron.url),
          key: yield* makePatientKey,
          patient_agent_id: "patient-traced-1",
          provider_npi: provider,
          consented_actions: ["read:records"],
          patient_endpoint: "https://patient.example/agent"
        })
        assert.strictEqual(done.provider_npi, provider)

        const spans = yield* waitFor(
          "the handshake's span at the receiver",
          Effect.sync(() => {
            const all = spansOf(receiver.received)
            return all.some((s) => s.name === "HandshakeServer.handshake") ? Option.some(all) : Option.none()
          }),
          20_000
        )
        const handshakeSpan = spans.find((s) => s.name === "HandshakeServer.handshake")!
        assert.strictEqual(handshakeSpan.attributes["handshake.outcome"], "completed")
        assert.strictEqual(handshakeSpan.attributes["handshake.provider_npi"], provider)
        assert.isString(handshakeSpan.attributes["handshake.connection_id"])

        const names = new Set(spans.map((s) => s.name))
        for (const name of ["AxonClient.registerNeuron", "AxonClient.registerProvider", "ApiKeys.create"]) {
          assert.isTrue(names.has(name), `a ${name} span was exported`)
        }
        const transitions = spans.filter((s) => typeof s.attributes["lifecycle.event"] === "string")
        assert.includeMembers(transitions.map((s) => s.attributes["lifecycle.event"]), [
          "RegistrationStarted",
          "Registered",
          "ProviderRegistered"
        ])
        const adminRequests = spans.filter((s) => s.attributes["url.path"] === "/v1/status")
        assert.isAtLeast(adminRequests.length, 1, "the admin request has its span")
        const bearer = (yield* readRecords(neuron.dataDir)).bearerToken!
        assertNoSecret(
          [["bearer token", bearer], ["enrollment token", ENROLLMENT], ["admin token", ADMIN], ["API key", apiKey]],
          receiver.received.map((r, i) => [`export ${i} to ${r.path}`, r.body.toString("utf8")] as const)
        )
      })
  )

  it.scopedLive(
    "traces: http/protobuf is the default protocol (the span's name is in the protobuf body); OTEL_SERVICE_NAME names the service",
    () =>
      Effect.gen(function*() {
        const receiver = yield* startReceiver
        const tracer = Option.getOrThrow(
          yield* tracerFor({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: "neuron-clinic-7" })
        )
        yield* Effect.withSpan(Effect.void, "Probe.protobufSpan").pipe(Effect.withTracer(tracer))
        const exported = yield* waitFor(
          "a protobuf export",
          Effect.sync(() => Option.fromNullable(receiver.received.find((r) => r.path === "/v1/traces")))
        )
        assert.strictEqual(exported.contentType, "application/x-protobuf")
        assert.include(exported.body.toString("latin1"), "Probe.protobufSpan")
        assert.include(exported.body.toString("latin1"), "neuron-clinic-7")
      })
  )

  it.effect("traces: without an endpoint there is no exporter; a bad endpoint is a configuration error naming the variable", () =>
    Effect.gen(function*() {
      const read = (variables: Record<string, string>) =>
        Tracing.config("neuron").pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables)))),
          Effect.either
        )
      const none = yield* read({})
      assert.isTrue(none._tag === "Right" && Option.isNone(none.right))
      const blank = yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "  " })
      assert.isTrue(blank._tag === "Right" && Option.isNone(blank.right))
      const traces = yield* read({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/custom/traces" })
      assert.isTrue(traces._tag === "Right" && Option.isSome(traces.right))
      if (traces._tag === "Right" && Option.isSome(traces.right)) {
        assert.strictEqual(traces.right.value.url, "http://collector:4318/custom/traces")
        assert.strictEqual(traces.right.value.protocol, "http/protobuf")
      }
      const bad = yield* read({ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" })
      assert.isTrue(bad._tag === "Left")
      if (bad._tag === "Left") assert.include(String(bad.left), "OTEL_EXPORTER_OTLP_ENDPOINT")
    }))
})

/** `Tracing.layer` as `src/main.ts` provides it, reading the OTEL_* `variables` instead of the environment. */
const tracingLayer = (variables: Record<string, string>) =>
  Tracing.layer("neuron").pipe(
    Layer.provide(NodeHttpClient.layerUndici),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables))))),
    Layer.orDie
  )

/** A tracer that notes the name of every span it is asked to make, then makes it as Effect's built-in one does. */
const countingTracer = () => {
  const builtIn = Effect.runSync(Effect.tracer)
  const names: Array<string> = []
  const tracer = Tracer.make({
    span: (name, ...rest) => {
      names.push(name)
      return builtIn.span(name, ...rest)
    },
    context: builtIn.context
  })
  return { names, tracer }
}

/**
 * A Neuron built over `under` (as main.ts builds it over `Tracing.layer`) with `tracer` installed, doing what makes
 * spans: it registers, beats at least twice more, adds a provider (an admin request and a registry call), answers
 * `/v1/status` and completes a handshake. The test's own side (requests, the patient) runs with tracing off.
 */
const exercise = (under: Layer.Layer<never>, tracer: Tracer.Tracer) =>
  Effect.gen(function*() {
    const registry = yield* startRegistry()
    const neuron = yield* startNeuron({
      registryUrls: [registry.url],
      overrides: { heartbeatInterval: "100 millis", adminToken: Option.some(Redacted.make(ADMIN)) },
      under
    }).pipe(Effect.withTracer(tracer), Effect.withTracerEnabled(true))
    yield* waitUntil("healthy", Effect.map(call(neuron.url, "GET", "/health"), (a) => a.body?.status === "healthy"))
    for (let beats = 0; beats < 2; beats++) {
      const last = (yield* readHealthFile(neuron.dataDir))?.last_heartbeat_at
      yield* waitUntil(
        "another heartbeat",
        Effect.map(readHealthFile(neuron.dataDir), (h) =>
          typeof h?.last_heartbeat_at === "string" && h.last_heartbeat_at !== last)
      )
    }
    const provider = npiOf(402)
    assert.strictEqual(
      (yield* call(neuron.url, "POST", "/v1/providers", { token: ADMIN, body: { provider_npi: provider } })).status,
      201
    )
    assert.strictEqual((yield* call(neuron.url, "GET", "/v1/status", { token: ADMIN })).status, 200)
    const done = yield* handshake({
      url: handshakeUrl(neuron.url),
      key: yield* makePatientKey,
      patient_agent_id: "patient-untraced-1",
      provider_npi: provider,
      consented_actions: ["read:records"],
      patient_endpoint: "https://patient.example/agent"
    })
    assert.strictEqual(done.provider_npi, provider)
  }).pipe(Effect.withTracerEnabled(false))

/** The spans `exercise` makes when tracing is on: the registry calls and theirs, the heartbeat, requests, handshake. */
const PER_CALL_SPANS = [
  "AxonClient.registerNeuron",
  "AxonClient.updateEndpoint",
  "AxonClient.registerProvider",
  "http.client PUT",
  "RegistrationService.beat",
  "http.server POST",
  "http.server GET",
  "HandshakeServer.handshake"
]

describe("Spans only with an exporter", () => {
  it.scopedLive(
    "traces: with no exporter configured (no OTEL_* variable), Tracing.layer makes the Neuron record no span at all: no per-call span of the registry calls (AxonClient.*, the HTTP client's), the heartbeat, the admin requests or the handshake",
    () =>
      Effect.gen(function*() {
        const counting = countingTracer()
        yield* exercise(tracingLayer({}), counting.tracer)
        assert.deepStrictEqual(counting.names, [], "spans were made with no exporter configured")
      })
  )

  it.scopedLive(
    "traces: the span counter of the test above sees the per-call spans when tracing is on (without Tracing.layer): the registry calls, their HTTP client spans, the heartbeat, the admin requests, the handshake",
    () =>
      Effect.gen(function*() {
        const counting = countingTracer()
        yield* exercise(Layer.empty, counting.tracer)
        assert.includeMembers([...new Set(counting.names)], PER_CALL_SPANS)
      })
  )

  it.scopedLive(
    "traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, Tracing.layer (as main.ts provides it) exports the per-call spans: the heartbeat's registry call and its HTTP client span, the admin requests, the handshake",
    () =>
      Effect.gen(function*() {
        const receiver = yield* startReceiver
        yield* exercise(
          tracingLayer({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }),
          Effect.runSync(Effect.tracer)
        )
        const names = yield* waitFor(
          "the spans at the receiver",
          Effect.sync(() => {
            const names = new Set(spansOf(receiver.received).map((s) => s.name))
            return PER_CALL_SPANS.every((name) => names.has(name)) ? Option.some(names) : Option.none()
          }),
          20_000
        )
        assert.includeMembers([...names], PER_CALL_SPANS)
      })
  )
})
