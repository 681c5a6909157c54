/**
 * Content-Type by file extension for static files: our own table of web assets (no dependency).
 * Invariants: lookups are case-insensitive on the last extension only; textual types carry
 * `; charset=utf-8`; anything unknown is `application/octet-stream` (never sniffed: the static
 * server also sends `X-Content-Type-Options: nosniff`).
 */

import { extname } from 'node:path';

/** Type for files whose extension is missing or not in the table. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const UTF8 = '; charset=utf-8';

// Extension (lower case, no dot) -> media type without parameters. Types that are text get the
// charset added below (see TEXT_TYPES), so the table stays a plain list of IANA names.
const TYPES: Readonly<Record<string, string>> = {
  // Documents and code
  html: 'text/html',
  htm: 'text/html',
  xhtml: 'application/xhtml+xml',
  css: 'text/css',
  // RFC 9239: text/javascript is the one type for JavaScript, classic scripts and modules alike.
  js: 'text/javascript',
  mjs: 'text/javascript',
  cjs: 'text/javascript',
  json: 'application/json',
  jsonld: 'application/ld+json',
  map: 'application/json',
  webmanifest: 'application/manifest+json',
  txt: 'text/plain',
  text: 'text/plain',
  log: 'text/plain',
  md: 'text/markdown',
  markdown: 'text/markdown',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  xml: 'application/xml',
  xsl: 'application/xml',
  rss: 'application/rss+xml',
  atom: 'application/atom+xml',
  ics: 'text/calendar',
  vtt: 'text/vtt',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  wasm: 'application/wasm',
  pdf: 'application/pdf',
  // Images
  svg: 'image/svg+xml',
  png: 'image/png',
  apng: 'image/apng',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  ico: 'image/x-icon',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  // Fonts
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  eot: 'application/vnd.ms-fontobject',
  // Audio and video
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  webm: 'video/webm',
  ogv: 'video/ogg',
  mov: 'video/quicktime',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  ogg: 'audio/ogg',
  oga: 'audio/ogg',
  opus: 'audio/ogg',
  wav: 'audio/wav',
  flac: 'audio/flac',
  // Archives and binaries
  zip: 'application/zip',
  gz: 'application/gzip',
  tgz: 'application/gzip',
  tar: 'application/x-tar',
  '7z': 'application/x-7z-compressed',
  rar: 'application/vnd.rar',
  bin: 'application/octet-stream',
};

// Types that are text although not under text/*: browsers decode them as characters, so without a
// charset they would fall back to a legacy encoding for non-ASCII bytes.
const TEXT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/ld+json',
  'application/manifest+json',
  'application/xml',
  'application/xhtml+xml',
  'application/rss+xml',
  'application/atom+xml',
  'application/yaml',
  'image/svg+xml',
]);

function withCharset(type: string): string {
  return type.startsWith('text/') || TEXT_TYPES.has(type) ? type + UTF8 : type;
}

// Precomputed once so the hot path is a single map lookup, no string building per request.
const FULL_TYPES: ReadonlyMap<string, string> = new Map(
  Object.entries(TYPES).map(([ext, type]) => [ext, withCharset(type)]),
);

/**
 * The Content-Type header value for a file path, from its last extension (case-insensitive):
 * `app.min.JS` -> `text/javascript; charset=utf-8`, `blob` -> `application/octet-stream`.
 * Never throws.
 */
export function contentTypeFor(filePath: string): string {
  const ext = extname(filePath).slice(1).toLowerCase();
  if (ext === '') return DEFAULT_CONTENT_TYPE;
  return FULL_TYPES.get(ext) ?? DEFAULT_CONTENT_TYPE;
}
