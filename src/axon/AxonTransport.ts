/**
 * One registry call on the wire: the bearer token set at the send, the time limit, the answer read into a value or
 * an `AxonError` (both error-body shapes), and failover across the registry URLs (`AxonFailover`).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Arr from "effect/Array"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Json from "../domain/Json.js"
import { describeParseError } from "../http/ErrorBody.js"
import { AxonError, type AxonOperation, classify, describeAnswer, readErrorBody } from "./AxonError.js"
import * as AxonFailover from "./AxonFailover.js"

/** One registry call, without its base URL. */
export interface AxonCall<A> {
  readonly operation: AxonOperation
  readonly request: HttpClientRequest.HttpClientRequest
  /** Set as `Authorization: Bearer` on the request at the send, and scrubbed from any message. */
  readonly token: Option.Option<Redacted.Redacted<string>>
  /** Reads a 2xx answer; a failure here is `undecodable`. */
  readonly onSuccess: (
    response: HttpClientResponse.HttpClientResponse,
    url: string
  ) => Effect.Effect<A, HttpClientError.ResponseError | ParseResult.ParseError>
  /** The value of a "400/409 already registered" answer, for the one call where that is a success. */
  readonly alreadyRegistered?: A
}

/**
 * Reads a 2xx answer's JSON body with `schema`, as untrusted text: its nesting is bounded before it is parsed
 * (`Json.parseUntrusted`). The platform's `schemaBodyJson` parses anything, and a registry answering JSON nested
 * thousands deep then made Schema's error formatter overflow the stack: a defect instead of an AxonError.
 */
export const schemaBodyJson = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(schema)
  return (
    response: HttpClientResponse.HttpClientResponse
  ): Effect.Effect<A, HttpClientError.ResponseError | ParseResult.ParseError> =>
    Effect.flatMap(response.text, (text): Effect.Effect<A, HttpClientError.ResponseError | ParseResult.ParseError> => {
      const json = Json.parseUntrusted(text)
      return json._tag === "Right" ? decode(json.right) : Effect.fail(
        new HttpClientError.ResponseError({
          request: response.request,
          response,
          reason: "Decode",
          description: json.left === "too_deep" ? `the body ${Json.describeRefusal(json.left)}` : "not JSON"
        })
      )
    })
}

/** Sends calls to the current registry, failing over on unreachable, time-out and 5xx. */
export interface AxonTransport {
  readonly run: <A>(call: AxonCall<A>) => Effect.Effect<A, AxonError>
  readonly current: Effect.Effect<string>
}

// A looser registry might echo what it was sent; whatever it says, a token never reaches a message.
const scrub = (text: string, token: Option.Option<Redacted.Redacted<string>>): string =>
  Option.match(token, {
    onNone: () => text,
    onSome: (t) => Redacted.value(t) === "" ? text : text.split(Redacted.value(t)).join("[redacted]")
  })

// Only the system error's code or message: the platform error also holds the request, headers included.
const transportDetail = (cause: unknown): string => {
  const c = cause as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } }
  const detail = c?.code ?? c?.cause?.code ?? c?.cause?.message ?? c?.message
  return typeof detail === "string" ? detail : "transport error"
}

/** Encodes a request body with `schema`; a value the schema refuses is `rejected` before anything is sent. */
export const withBody = <A, I>(
  operation: AxonOperation,
  schema: Schema.Schema<A, I>,
  body: A,
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<HttpClientRequest.HttpClientRequest, AxonError> =>
  HttpClientRequest.schemaBodyJson(schema)(request, body).pipe(
    Effect.mapError((e) =>
      new AxonError({
        reason: "rejected",
        operation,
        message: `${operation} request not sent: ${
          e.reason._tag === "SchemaError" ? describeParseError(e.reason.error) : "body is not JSON"
        }`
      })
    )
  )

/** Builds the transport on the host's `HttpClient`, derived once per registry URL. */
export const make = (options: {
  readonly urls: Arr.NonEmptyReadonlyArray<string>
  readonly timeout: Duration.DurationInput
}): Effect.Effect<AxonTransport, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const timeout = Duration.decode(options.timeout)
    const base = (yield* HttpClient.HttpClient).pipe(HttpClient.mapRequest(HttpClientRequest.acceptJson))
    const urls = Arr.map(options.urls, (url) => url.replace(/\/+$/, ""))
    const clients = new Map(
      urls.map((url) => [url, base.pipe(HttpClient.mapRequest(HttpClientRequest.prependUrl(url)))])
    )
    const failover = yield* AxonFailover.make(urls)

    const attempt = <A>(call: AxonCall<A>) => (url: string): Effect.Effect<A, AxonError> => {
      const { operation } = call
      const fail = (reason: AxonError["reason"], message: string, extra?: { status?: number; cause?: unknown }) =>
        Effect.fail(new AxonError({ reason, operation, url, message: scrub(message, call.token), ...extra }))
      const request = Option.match(call.token, {
        onNone: () => call.request,
        onSome: (token) => HttpClientRequest.bearerToken(call.request, token)
      })
      return clients.get(url)!.execute(request).pipe(
        Effect.flatMap((response): Effect.Effect<A, AxonError> => {
          if (response.status >= 200 && response.status < 300) {
            return call.onSuccess(response, url).pipe(Effect.catchAll((e) =>
              fail(
                "undecodable",
                `Axon registry at ${url} answered ${operation} with a body the Neuron cannot read: ${
                  e._tag === "ParseError" ? describeParseError(e) : e.description ?? "not JSON"
                }`,
                { status: response.status }
              )
            ))
          }
          return response.text.pipe(
            Effect.orElseSucceed(() => ""),
            Effect.flatMap((text) => {
              const answer = readErrorBody(response.status, text)
              const reason = classify(operation, answer)
              if (reason === "already_registered" && call.alreadyRegistered !== undefined) {
                return Effect.succeed(call.alreadyRegistered)
              }
              return fail(
                reason === "already_registered" ? "rejected" : reason,
                describeAnswer(operation, answer, url),
                {
                  status: response.status
                }
              )
            })
          )
        }),
        Effect.catchTags({
          // execute() reports only RequestError; ResponseError is in its type for the body readers.
          ResponseError: (e) =>
            fail("undecodable", `Axon registry at ${url} answered ${operation} unreadably`, {
              status: e.response.status
            }),
          RequestError: (e) =>
            e.reason === "Encode"
              ? fail("rejected", `${operation} request could not be sent: ${e.description ?? "body not encodable"}`)
              : fail(
                "unreachable",
                `Axon registry at ${url} is unreachable (${operation}): ${transportDetail(e.cause)}`,
                {
                  cause: new Error(transportDetail(e.cause))
                }
              )
        }),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new AxonError({
              reason: "timeout",
              operation,
              url,
              message: `Axon registry at ${url} did not answer ${operation} within ${Duration.format(timeout)}`
            })
        })
      )
    }

    const run = <A>(call: AxonCall<A>) =>
      failover.run(attempt(call)).pipe(Effect.annotateLogs({ service: "AxonClient", operation: call.operation }))

    return { run, current: failover.current }
  })
