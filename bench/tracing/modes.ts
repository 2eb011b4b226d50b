/**
 * What both tracing benches share: the modes that are not about an exporter, and the capture of the runtime a
 * Layer's own fibers get.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Runtime from "effect/Runtime"

/** The modes whose Layer needs nothing from the run. */
export type LocalMode = "spans off" | "Effect's tracer" | "tracer, no client span" | "tracer, no propagation"

/** The Layer of a mode that needs nothing from the run, put under the Neuron's. */
export const localLayer = (mode: LocalMode): Layer.Layer<never> => {
  switch (mode) {
    case "spans off":
      return Layer.setTracerEnabled(false)
    case "Effect's tracer":
      return Layer.empty
    case "tracer, no client span":
      return Layer.locallyScoped(HttpClient.currentTracerDisabledWhen, () => true)
    case "tracer, no propagation":
      return Layer.locallyScoped(HttpClient.currentTracerPropagation, false)
  }
}

/** The runtime (fiber references included) a Layer's own fibers get: captured at the end of its build. */
export class Built extends Context.Tag("bench/Built")<Built, Runtime.Runtime<never>>() {}
/** Captures `Built`. */
export const captured = Layer.effect(Built, Effect.runtime<never>())
