/**
 * What a Mercure access token grants: its `authorization_details` (spec "Authorization Details",
 * "Topic Matcher List") or, in compatibility mode, its 0.x `mercure` claim; and the checks of those
 * grants against an update's topics and a subscription's payload (spec "Payloads").
 * Invariant: a claim is accepted whole or not at all: one bad Mercure detail throws invalid_token
 * (no partial acceptance).
 */
import type { JWTPayload } from 'jose';
import {
  compileMatcher,
  MatcherError,
  type MatcherLimits,
  type MatcherType,
  type TopicMatcher,
} from './matchers.ts';
import { invalidToken } from './token-presentation.ts';

export interface SubscribeGrant {
  matcher: TopicMatcher;
  /** The detail's `payload` (any JSON value); undefined when the detail has none. */
  payload: unknown;
}

export interface Grants {
  publish: TopicMatcher[];
  /** In token order: payload selection takes the first grant whose matcher matches. */
  subscribe: SubscribeGrant[];
  /** From `exp`, in ms since the epoch; undefined only for a 0.x token without `exp`. */
  expiresAt: number | undefined;
  subject: string | undefined;
  issuer: string | undefined;
  /** A 0.x `mercure` claim token (compatibility mode only). */
  legacy: boolean;
}

/** The RFC 9396 authorization detail type of the Mercure spec, compared byte by byte. */
export const MERCURE_DETAIL_TYPE = 'https://mercure.rocks/authorization-detail';

/** Implementation-defined limits of spec "Authorization Details"; over them: invalid_token. */
export const MAX_MERCURE_DETAILS = 64;
export const MAX_TOPICS_PER_DETAIL = 256;

type Limits = MatcherLimits;
type PartialGrants = Pick<Grants, 'publish' | 'subscribe'>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function compile(
  type: MatcherType,
  pattern: string,
  hubUrl: string,
  limits: Limits,
  where: string,
): TopicMatcher {
  if (pattern === '') throw invalidToken(`${where}: empty matcher`);
  try {
    return compileMatcher(type, pattern, hubUrl, limits);
  } catch (err) {
    if (err instanceof MatcherError) throw invalidToken(`${where}: ${err.message}`, err);
    throw err;
  }
}

/** Spec "Authorization Details" and "Topic Matcher List": any defect rejects the whole token. */
export function detailGrants(claim: unknown, hubUrl: string, limits: Limits): PartialGrants {
  const grants: PartialGrants = { publish: [], subscribe: [] };
  if (claim === undefined) return grants; // valid, grants nothing
  if (!Array.isArray(claim)) throw invalidToken('authorization_details is not an array');
  let mercureDetails = 0;
  for (const [i, detail] of claim.entries()) {
    const where = `authorization_details[${i}]`;
    if (!isObject(detail)) throw invalidToken(`${where} is not an object`);
    if (detail['type'] !== MERCURE_DETAIL_TYPE) continue; // another API's detail (RFC 9396)
    if (++mercureDetails > MAX_MERCURE_DETAILS) {
      throw invalidToken(`more than ${MAX_MERCURE_DETAILS} Mercure authorization details`);
    }
    const { actions, topics } = detail;
    if (!Array.isArray(actions) || actions.length === 0) {
      throw invalidToken(`${where}.actions is not a non-empty array`);
    }
    if (!actions.every((a) => typeof a === 'string')) {
      throw invalidToken(`${where}.actions has a non-string entry`);
    }
    if (!Array.isArray(topics) || topics.length === 0) {
      throw invalidToken(`${where}.topics is not a non-empty array`);
    }
    if (topics.length > MAX_TOPICS_PER_DETAIL) {
      throw invalidToken(`${where}.topics has more than ${MAX_TOPICS_PER_DETAIL} entries`);
    }
    const matchers = topics.map((entry, j) => {
      const at = `${where}.topics[${j}]`;
      if (!isObject(entry)) throw invalidToken(`${at} is not an object`);
      const { match, match_type: type = 'exact' } = entry;
      if (typeof match !== 'string') throw invalidToken(`${at}.match is not a string`);
      // Case-sensitive; an unsupported type cannot be evaluated, so it cannot be skipped.
      if (type !== 'exact' && type !== 'urlpattern') {
        throw invalidToken(`${at}.match_type ${JSON.stringify(type)} is not exact or urlpattern`);
      }
      return compile(type, match, hubUrl, limits, at);
    });
    // Unknown actions grant nothing and do not invalidate (spec: forward compatibility).
    if (actions.includes('publish')) grants.publish.push(...matchers);
    if (actions.includes('subscribe')) {
      const payload = Object.hasOwn(detail, 'payload') ? detail['payload'] : undefined;
      for (const matcher of matchers) grants.subscribe.push({ matcher, payload });
    }
  }
  return grants;
}

const LEGACY_CLAIMS = ['mercure', 'https://mercure.rocks/'] as const;

/**
 * A 0.x token: a `mercure` (or namespaced) claim and no `authorization_details`. A token carrying
 * both is a 1.0 token, fully validated, its legacy claim ignored (as the Mercure hub does).
 */
export function isLegacyToken(payload: JWTPayload): boolean {
  return (
    !Object.hasOwn(payload, 'authorization_details') &&
    LEGACY_CLAIMS.some((claim) => Object.hasOwn(payload, claim))
  );
}

/** 0.x `mercure: {publish: [...], subscribe: [...], payload}`: strings and URI Templates. */
export function legacyGrants(payload: JWTPayload, hubUrl: string, limits: Limits): PartialGrants {
  const name = Object.hasOwn(payload, 'mercure') ? 'mercure' : 'https://mercure.rocks/';
  const claim = payload[name];
  if (!isObject(claim)) throw invalidToken(`claim ${name} is not an object`);
  const selectors = (key: 'publish' | 'subscribe'): TopicMatcher[] => {
    const list = claim[key];
    if (list === undefined) return [];
    const where = `${name}.${key}`;
    if (!Array.isArray(list)) throw invalidToken(`${where} is not an array`);
    if (list.length > MAX_TOPICS_PER_DETAIL) {
      throw invalidToken(`${where} has more than ${MAX_TOPICS_PER_DETAIL} entries`);
    }
    return list.map((selector, i) => {
      if (typeof selector !== 'string') throw invalidToken(`${where}[${i}] is not a string`);
      return compile('uritemplate', selector, hubUrl, limits, `${where}[${i}]`);
    });
  };
  const legacyPayload = claim['payload'];
  return {
    publish: selectors('publish'),
    subscribe: selectors('subscribe').map((matcher) => ({ matcher, payload: legacyPayload })),
  };
}

/** Does some subscribe grant match any of the update's topics (canonical or alternate)? */
export function canSubscribe(grants: Grants | null, topics: readonly string[]): boolean {
  if (grants === null) return false;
  return topics.some((topic) => grants.subscribe.some((g) => g.matcher.matches(topic)));
}

/** Is every topic of the update matched by some publish grant? No topic: false (nothing granted). */
export function canPublish(grants: Grants, topics: readonly string[]): boolean {
  if (topics.length === 0) return false;
  return topics.every((topic) => grants.publish.some((m) => m.matches(topic)));
}

/**
 * The payload of a subscription whose own matcher string is `match`: that of the first subscribe
 * grant whose matcher matches `match` treated as a topic (spec "Payloads"). A 0.x token's payload
 * is token-wide, so it applies even when no grant matches (as in Mercure 0.x).
 */
export function payloadFor(grants: Grants | null, match: string): unknown {
  if (grants === null) return undefined;
  const found = grants.subscribe.find((g) => g.matcher.matches(match));
  if (found !== undefined) return found.payload;
  return grants.legacy ? grants.subscribe[0]?.payload : undefined;
}
