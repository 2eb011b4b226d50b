/**
 * How the `neuron` command talks to a running Neuron: its admin API (PROTOCOL.md sections 3 and 7) at the address
 * and with the admin token of the same configuration the Neuron reads (environment, then the config file). Every
 * failure becomes one `CliError` line: nothing answers (or not in time), the token is refused, or the Neuron refused
 * the request with its own `{"error":{code,message}}`.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { describeConfigError, loadFromVariables, type NeuronSettings } from "../config/NeuronConfig.js"
import { CliError } from "./CliError.js"

/** How long one admin request may take before the Neuron counts as not answering. */
export const REQUEST_TIMEOUT = Duration.seconds(5)

/** The Neuron's settings as the Neuron itself would read them now; a bad value is one `Configuration` line. */
export const loadSettings: Effect.Effect<NeuronSettings, CliError, FileSystem.FileSystem> = Effect.suspend(() =>
  loadFromVariables(process.env)
).pipe(
  Effect.mapError((e) =>
    new CliError({ reason: "Configuration", message: `configuration error: ${describeConfigError(e)}` })
  )
)

/**
 * The URL this machine reaches the Neuron's listener at: its host and port, with a wildcard host (`0.0.0.0`, `::`)
 * replaced by loopback, where the admin routes answer without a token too.
 */
export const adminUrlOf = (settings: Pick<NeuronSettings, "host" | "port">): string => {
  const host = settings.host === "0.0.0.0" || settings.host === ""
    ? "127.0.0.1"
    : settings.host === "::" || settings.host === "[::]"
    ? "[::1]"
    : settings.host.includes(":") && !settings.host.startsWith("[")
    ? `[${settings.host}]`
    : settings.host
  return `http://${host}:${settings.port}`
}

/** The error body of PROTOCOL.md (`{"error":{code,message}}`), read leniently. */
const ErrorBody = Schema.Struct({
  error: Schema.Struct({ code: Schema.String, message: Schema.optional(Schema.String) })
})

/** An answer from the Neuron: its status and its JSON body (`null` when empty). */
export interface Answer {
  readonly status: number
  readonly body: unknown
}

const make = Effect.gen(function*() {
  const settings = yield* loadSettings
  const url = adminUrlOf(settings)
  const http = yield* HttpClient.HttpClient
  const client = http.pipe(
    HttpClient.mapRequest((request) =>
      Option.match(settings.adminToken, {
        onNone: () => request,
        // The token goes on the wire here and nowhere else: never in a message.
        onSome: (token) => HttpClientRequest.bearerToken(request, Redacted.value(token))
      })
    ),
    HttpClient.mapRequest(HttpClientRequest.prependUrl(url))
  )

  const notRunning = (why: string) =>
    new CliError({ reason: "NotRunning", message: `no Neuron answers at ${url} (${why}); is it running?` })

  const readAnswer = (response: HttpClientResponse.HttpClientResponse) =>
    Effect.map(
      response.text.pipe(Effect.orElseSucceed(() => "")),
      (text): Answer => {
        try {
          return { status: response.status, body: text === "" ? null : JSON.parse(text) }
        } catch {
          return { status: response.status, body: undefined }
        }
      }
    )

  const refusal = (answer: Answer): CliError => {
    const decoded = Schema.decodeUnknownOption(ErrorBody)(answer.body)
    if (answer.status === 401) {
      return new CliError({
        reason: "Unauthorized",
        message: Option.isSome(settings.adminToken)
          ? `the Neuron at ${url} refused the admin token (401): NEURON_ADMIN_TOKEN is not the running Neuron's`
          : `the Neuron at ${url} requires an admin token (401): set NEURON_ADMIN_TOKEN (environment or config file)`
      })
    }
    if (answer.status === 403 && Option.isSome(decoded) && decoded.value.error.code === "FORBIDDEN") {
      return new CliError({
        reason: "Unauthorized",
        message: `the Neuron at ${url} refused this caller (403): ${decoded.value.error.message ?? "forbidden"}`
      })
    }
    if (Option.isNone(decoded)) {
      return new CliError({
        reason: "NotRunning",
        message: `something at ${url} answered ${answer.status} without a Neuron error body; is it a Neuron?`
      })
    }
    const { code, message } = decoded.value.error
    return new CliError({ reason: "Refused", message: `${message ?? "refused"} (${answer.status} ${code})` })
  }

  /**
   * Sends one request; succeeds with the answer when its status is one of `expected`, else fails with the
   * fitting `CliError`.
   */
  const send = (
    request: HttpClientRequest.HttpClientRequest,
    expected: ReadonlyArray<number>
  ): Effect.Effect<Answer, CliError> =>
    client.execute(request).pipe(
      Effect.flatMap(readAnswer),
      Effect.timeoutFail({
        duration: REQUEST_TIMEOUT,
        onTimeout: () => notRunning(`no answer within ${Duration.format(REQUEST_TIMEOUT)}`)
      }),
      Effect.catchTags({
        RequestError: (e) => Effect.fail(notRunning(e.cause instanceof Error ? causeText(e.cause) : e.message)),
        ResponseError: (e) => Effect.fail(notRunning(e.message))
      }),
      Effect.flatMap((answer) =>
        expected.includes(answer.status) ? Effect.succeed(answer) : Effect.fail(refusal(answer))
      ),
      Effect.scoped
    )

  /** Decodes an answer's body; a body that is not what the contract says means something else answered. */
  const decode = <A, I>(schema: Schema.Schema<A, I>, answer: Answer): Effect.Effect<A, CliError> =>
    Schema.decodeUnknown(schema)(answer.body).pipe(
      Effect.mapError(() =>
        new CliError({ reason: "NotRunning", message: `the answer from ${url} is not what a Neuron sends` })
      )
    )

  return {
    url,
    settings,
    send,
    decode,
    get: (path: string, expected: ReadonlyArray<number> = [200]) => send(HttpClientRequest.get(path), expected),
    post: (path: string, body: unknown, expected: ReadonlyArray<number>) =>
      send(HttpClientRequest.post(path).pipe(HttpClientRequest.bodyUnsafeJson(body)), expected),
    del: (path: string, expected: ReadonlyArray<number>) => send(HttpClientRequest.del(path), expected)
  } as const
})

/** The cause of a failed connection in a person's words (`ECONNREFUSED`: nothing listens). */
const causeText = (cause: Error): string => {
  const code = (cause as { code?: unknown }).code ?? (cause.cause as { code?: unknown } | undefined)?.code
  if (code === "ECONNREFUSED") return "connection refused"
  if (typeof code === "string") return code
  return cause.message
}

/** The admin API of the Neuron this configuration describes. Needs an `HttpClient` and a `FileSystem`. */
export class AdminClient extends Effect.Service<AdminClient>()("neuron/cli/AdminClient", { effect: make }) {
  /** Over `fetch`: the lightest client to load, for a command that makes a request or two. */
  static readonly layerFetch = this.Default.pipe(Layer.provide(FetchHttpClient.layer))
}
