/**
 * National Provider Identifier: 10 ASCII digits, the first 1 or 2, the last the Luhn check digit
 * computed over the prefix `80840` followed by the first nine digits (the CMS rule).
 */
import type * as Brand from "effect/Brand"
import * as Schema from "effect/Schema"

/**
 * The check digit that makes nine digits a valid NPI: Luhn over `80840` followed by the nine digits and the check
 * digit, so walking right to left from the ninth digit, every other digit starting with it is doubled.
 */
export const checkDigit = (first9: string): number => {
  const digits = "80840" + first9
  let sum = 0
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return (10 - (sum % 10)) % 10
}

/** True for a well-formed NPI with a valid check digit. */
export const isValidNpi = (s: string): boolean =>
  /^[12][0-9]{9}$/.test(s) && checkDigit(s.slice(0, 9)) === s.charCodeAt(9) - 48

/** The valid NPI that starts with these nine digits (for test data and fixtures). */
export const withCheckDigit = (first9: string): string => first9 + String(checkDigit(first9))

/** A valid NPI, branded so that an unchecked string cannot stand in for one. */
export const Npi = Schema.String.pipe(
  Schema.filter((s) => isValidNpi(s) || "must be a valid NPI: 10 digits, first 1 or 2, CMS Luhn check digit"),
  Schema.brand("Npi"),
  Schema.annotations({
    identifier: "Npi",
    title: "NPI",
    description: "National Provider Identifier: 10 digits, first 1 or 2, CMS Luhn check digit",
    examples: ["1234567893" as any],
    // The filter alone would make property tests search blindly for the one string in ten with a good check digit.
    arbitrary: () => (fc) =>
      fc.tuple(fc.constantFrom("1", "2"), fc.stringMatching(/^[0-9]{8}$/)).map(([first, rest]) =>
        withCheckDigit(first + rest) as Brand.Branded<string, "Npi">
      )
  })
)

/** @see Npi */
export type Npi = typeof Npi.Type
