/**
 * Traces over OTLP/HTTP (`@effect/opentelemetry`'s OtlpTracer: Effect's own spans, batched and sent by an exporter
 * fiber; no OpenTelemetry SDK in the process). Configured by the standard OpenTelemetry variables, read from the
 * environment only:
 *
 * - `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://collector:4318`): spans go to `<endpoint>/v1/traces`;
 *   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names the full URL instead. Unset: no exporter at all, nothing is sent,
 *   and no span is recorded either (Effect's tracer is turned off for the whole program: see `layer`).
 * - `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the default, as the OpenTelemetry specification says) or
 *   `http/json`.
 * - `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,key2=value2`, for a collector that wants a token): a secret, kept
 *   `Redacted`.
 * - `OTEL_SERVICE_NAME`: the `service.name` resource attribute (default `neuron`, or `axon-registry`).
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"

/** Where and how spans are exported. */
export interface TracingSettings {
  /** The full URL spans are posted to (`.../v1/traces`). */
  readonly url: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Option.Option<Redacted.Redacted<Record<string, string>>>
  readonly serviceName: string
}

const url = (name: string) =>
  Config.string(name).pipe(
    Config.option,
    Config.map(Option.filter((s) => s.trim().length > 0)),
    Config.mapOrFail((raw) => {
      if (Option.isNone(raw)) return Either.right(Option.none<string>())
      const value = raw.value.trim()
      return URL.canParse(value) && /^https?:$/.test(new URL(value).protocol)
        ? Either.right(Option.some(value.replace(/\/+$/, "")))
        : Either.left(ConfigError.InvalidData([name], `expected an http(s) URL, got ${JSON.stringify(value)}`))
    })
  )

const headers = Config.redacted("OTEL_EXPORTER_OTLP_HEADERS").pipe(
  Config.option,
  Config.map(Option.flatMap((secret) => {
    const pairs = Redacted.value(secret).split(",").map((p) => p.trim()).filter((p) => p.includes("="))
    if (pairs.length === 0) return Option.none()
    return Option.some(Redacted.make(Object.fromEntries(pairs.map((p) => {
      const at = p.indexOf("=")
      return [decodeURIComponent(p.slice(0, at).trim()), decodeURIComponent(p.slice(at + 1).trim())]
    }))))
  }))
)

/** The settings from the `OTEL_*` variables; `None` when no endpoint is configured (no tracing exported). */
export const config = (defaultServiceName: string): Config.Config<Option.Option<TracingSettings>> =>
  Config.all({
    endpoint: url("OTEL_EXPORTER_OTLP_ENDPOINT"),
    tracesEndpoint: url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    protocol: Config.literal("http/protobuf", "http/json")("OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
      Config.withDefault("http/protobuf" as const)
    ),
    headers,
    serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault(defaultServiceName))
  }).pipe(Config.map((c) =>
    Option.orElse(c.tracesEndpoint, () => Option.map(c.endpoint, (e) => `${e}/v1/traces`)).pipe(
      Option.map((url): TracingSettings => ({
        url,
        protocol: c.protocol,
        headers: c.headers,
        serviceName: c.serviceName
      }))
    )
  ))

const withoutCredentials = (raw: string) => {
  const u = new URL(raw)
  return `${u.origin}${u.pathname}`
}

/** An OTLP tracer exporting to `settings` for the length of the scope (the last spans are sent when it closes). */
export const make = (
  settings: TracingSettings
): Effect.Effect<Tracer.Tracer, never, Scope.Scope | HttpClient.HttpClient> =>
  OtlpTracer.make({
    url: settings.url,
    resource: { serviceName: settings.serviceName },
    ...(Option.isSome(settings.headers) ? { headers: Redacted.value(settings.headers.value) } : {}),
    exportInterval: Duration.seconds(1),
    shutdownTimeout: Duration.seconds(3)
  }).pipe(
    Effect.provide(settings.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf)
  )

/**
 * The tracer of a process: OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces endpoint) is set. Else tracing
 * is off for every fiber built over this Layer: a span nobody exports is work for nothing (Effect's built-in
 * tracer makes each one, with random ids, attributes and the HTTP client's header copies, and drops it), and the
 * heartbeat call measurably paid for it (BENCHMARKS.md, "Tracing cost"). Provide it under the application's Layer,
 * as `src/main.ts` does: the fiber references it sets reach everything built after it.
 */
export const layer = (
  defaultServiceName: string
): Layer.Layer<never, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.unwrapScoped(
    Effect.flatMap(config(defaultServiceName), (settings) =>
      Option.match(settings, {
        onNone: () => Effect.succeed(Layer.setTracerEnabled(false)),
        onSome: (s) =>
          Effect.map(
            make(s),
            (tracer) =>
              Layer.setTracer(tracer).pipe(
                Layer.tap(() =>
                  Effect.logInfo("exporting traces over OTLP").pipe(
                    Effect.annotateLogs({
                      url: withoutCredentials(s.url),
                      protocol: s.protocol,
                      service_name: s.serviceName
                    })
                  )
                )
              )
          )
      }))
  )
