/**
 * Reading a request body with the registry's 1 MiB limit, straight from Node's request. The platform's own
 * reader destroys the connection when a body goes over its limit, so a client sending a large chunked body
 * would see a reset instead of the contract's `400`; reading here lets the registry answer it.
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Http from "node:http"
import * as Json from "../domain/Json.js"

/** The largest request body accepted (PROTOCOL.md section 1). */
export const MAX_BODY_BYTES = 1024 * 1024

/** What reading a body found. */
export type Body = { readonly _tag: "Text"; readonly text: string } | { readonly _tag: "TooLarge" }

const tooLarge: Body = { _tag: "TooLarge" }
const text = (text: string): Body => ({ _tag: "Text", text })

/** Node's request behind a platform request, when the server is Node's. */
export const nodeSource = (request: HttpServerRequest.HttpServerRequest): Http.IncomingMessage | undefined =>
  "source" in request && typeof (request.source as any)?.on === "function"
    ? NodeHttpServerRequest.toIncomingMessage(request)
    : undefined

/** The declared body length, `undefined` when none (chunked) or not a number. */
export const declaredLength = (source: Http.IncomingMessage): number | undefined => {
  const header = source.headers["content-length"]
  const n = header === undefined ? NaN : Number(header)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/**
 * The whole body when Node has already buffered all of it (a small request, once the parser is past the
 * headers), else `undefined`.
 */
const takeWhole = (source: Http.IncomingMessage, declared: number): Body | undefined => {
  if (!source.complete) return undefined
  if (declared === 0) return text("")
  if (source.readableLength !== declared) return undefined
  const whole: Buffer | null = source.read()
  return whole === null ? undefined : text(whole.toString("utf8"))
}

/** Reads the body with listeners: a body that comes in pieces, or without a declared length. */
const readStreamed = (source: Http.IncomingMessage) =>
  Effect.async<Body>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const finish = (body: Body) => {
      source.off("data", onData).off("end", onEnd).off("error", onError)
      // Past the limit the rest is left to flow away unread: the connection stays usable for the answer.
      resume(Effect.succeed(body))
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) finish(tooLarge)
      else chunks.push(chunk)
    }
    const onEnd = () => finish(text(Buffer.concat(chunks).toString("utf8")))
    const onError = () => finish(tooLarge)
    source.on("data", onData).on("end", onEnd).on("error", onError)
    return Effect.sync(() => source.off("data", onData).off("end", onEnd).off("error", onError))
  })

/** Reads Node's request body, at most `MAX_BODY_BYTES`; a larger declared one is refused unread. */
export const read = (source: Http.IncomingMessage): Effect.Effect<Body> => {
  const declared = declaredLength(source)
  if (declared !== undefined && declared > MAX_BODY_BYTES) return Effect.succeed(tooLarge)
  if (declared === undefined) return readStreamed(source)
  const now = takeWhole(source, declared)
  if (now !== undefined) return Effect.succeed(now)
  // A fiber starts as soon as Node has parsed the headers; one scheduler turn later the parser has usually
  // buffered the whole body, which is then taken at once, without listeners.
  return Effect.flatMap(Effect.yieldNow(), () => {
    const later = takeWhole(source, declared)
    return later === undefined ? readStreamed(source) : Effect.succeed(later)
  })
}

/** A body that is not JSON, or nests too deep to be handled safely: the cause of a `Decode` RequestError. */
export class JsonRefused extends Error {
  constructor(readonly refusal: Json.JsonRefusal) {
    super(Json.describeRefusal(refusal))
  }
}

const alreadyRead = Symbol.for("neuron/http/RequestBody/alreadyRead")

/** True for a request made by `withBody`: its body was read (Node's stream is spent), ask the request for it. */
export const isAlreadyRead = (request: HttpServerRequest.HttpServerRequest): boolean =>
  (request as { readonly [alreadyRead]?: boolean })[alreadyRead] === true

/** The request with its body already read: the platform's body accessors answer from `body`. */
export const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  body: string
): HttpServerRequest.HttpServerRequest =>
  Object.create(request, {
    [alreadyRead]: { value: true },
    text: { value: Effect.succeed(body) },
    json: {
      value: Effect.try({
        try: () => {
          if (body === "") return null
          const parsed = Json.parseUntrusted(body)
          if (Either.isLeft(parsed)) throw new JsonRefused(parsed.left)
          return parsed.right
        },
        catch: (cause) => new HttpServerError.RequestError({ request, reason: "Decode", cause })
      })
    },
    urlParamsBody: { value: Effect.sync(() => UrlParams.fromInput(new URLSearchParams(body))) },
    arrayBuffer: { value: Effect.sync(() => new Uint8Array(Buffer.from(body, "utf8")).buffer) }
  })
