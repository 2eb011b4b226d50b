/**
 * Test support for the Axon client: the client itself on a real HTTP client, and small real HTTP servers (one that
 * counts requests and answers as told, one that never answers) plus the URL of a port where nothing listens.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Http from "node:http"
import { AxonClient, type AxonClientService } from "../../src/axon/AxonClient.js"
import type { Npi } from "../../src/domain/Npi.js"
import { freePort, listenScoped } from "../support/http.js"

/** The organization every client test registers. */
export const ORG = "1234567893" as Npi
/** A provider of it. */
export const PROVIDER = "1234567802" as Npi
/** The registration body of `ORG`. */
export const neuron = {
  organization_npi: ORG,
  organization_name: "Example Practice",
  organization_type: "practice",
  neuron_endpoint_url: "https://neuron.example.org"
}

/** The client on `urls`, built in the caller's scope on `httpClient` (Node's by default). */
export const makeClient = (
  urls: ReadonlyArray<string>,
  options?: {
    readonly timeout?: Duration.DurationInput
    readonly enrollmentToken?: string
    readonly httpClient?: Layer.Layer<HttpClient.HttpClient>
  }
): Effect.Effect<AxonClientService, never, Scope.Scope> =>
  Layer.build(
    AxonClient.layer({
      urls: urls as [string, ...Array<string>],
      timeout: options?.timeout ?? "5 seconds",
      enrollmentToken: Option.map(Option.fromNullable(options?.enrollmentToken), Redacted.make)
    }).pipe(Layer.provide(options?.httpClient ?? NodeHttpClient.layer))
  ).pipe(Effect.map(Context.get(AxonClient)))

/** A running test server. */
export interface TestServer {
  readonly url: string
  /** Requests received so far. */
  readonly count: Effect.Effect<number>
  /** The `Authorization` headers received, for checks that a token was (or was not) sent. */
  readonly authorizations: Effect.Effect<ReadonlyArray<string | undefined>>
}

const listen = (
  handler: (req: Http.IncomingMessage, res: Http.ServerResponse) => void
): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    let count = 0
    const authorizations: Array<string | undefined> = []
    const server = Http.createServer((req, res) => {
      count++
      authorizations.push(req.headers.authorization)
      req.resume()
      handler(req, res)
    })
    const url = yield* listenScoped(server)
    return {
      url,
      count: Effect.sync(() => count),
      authorizations: Effect.sync(() => [...authorizations])
    }
  })

/** Answers every request with what `answer` says: a status and a JSON value (or raw text). */
export const startServer = (
  answer: (req: Http.IncomingMessage) => readonly [status: number, body: unknown]
): Effect.Effect<TestServer, never, Scope.Scope> =>
  listen((req, res) => {
    const [status, body] = answer(req)
    const text = typeof body === "string" ? body : JSON.stringify(body)
    res.writeHead(status, { "Content-Type": "application/json" }).end(text)
  })

/** Answers every request with `status` and `body`. */
export const startFixedServer = (status: number, body: unknown): Effect.Effect<TestServer, never, Scope.Scope> =>
  startServer(() => [status, body])

/** Accepts every request and never answers it. */
export const startSilentServer = (): Effect.Effect<TestServer, never, Scope.Scope> => listen(() => {})

/** A URL on 127.0.0.1 where nothing listens (a port that was just free). */
export const closedPortUrl: Effect.Effect<string> = Effect.map(freePort, (port) => `http://127.0.0.1:${port}`)
