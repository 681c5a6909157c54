// Content-Type table: web asset types, charset on text types only, octet-stream for the unknown.
import { describe, expect, it } from 'vitest';
import { contentTypeFor, DEFAULT_CONTENT_TYPE } from './mime-types.ts';

describe('contentTypeFor', () => {
  it.each([
    ['index.html', 'text/html; charset=utf-8'],
    ['a/b/page.HTM', 'text/html; charset=utf-8'],
    ['style.css', 'text/css; charset=utf-8'],
    ['app.js', 'text/javascript; charset=utf-8'],
    ['mod.mjs', 'text/javascript; charset=utf-8'],
    ['data.json', 'application/json; charset=utf-8'],
    ['app.js.map', 'application/json; charset=utf-8'],
    ['site.webmanifest', 'application/manifest+json; charset=utf-8'],
    ['logo.svg', 'image/svg+xml; charset=utf-8'],
    ['feed.xml', 'application/xml; charset=utf-8'],
    ['notes.txt', 'text/plain; charset=utf-8'],
    ['README.md', 'text/markdown; charset=utf-8'],
    ['table.csv', 'text/csv; charset=utf-8'],
    ['img.png', 'image/png'],
    ['img.jpg', 'image/jpeg'],
    ['img.JPEG', 'image/jpeg'],
    ['img.gif', 'image/gif'],
    ['img.webp', 'image/webp'],
    ['img.avif', 'image/avif'],
    ['favicon.ico', 'image/x-icon'],
    ['f.woff', 'font/woff'],
    ['f.woff2', 'font/woff2'],
    ['f.ttf', 'font/ttf'],
    ['f.otf', 'font/otf'],
    ['f.eot', 'application/vnd.ms-fontobject'],
    ['doc.pdf', 'application/pdf'],
    ['a.zip', 'application/zip'],
    ['m.wasm', 'application/wasm'],
    ['v.mp4', 'video/mp4'],
    ['v.webm', 'video/webm'],
    ['s.mp3', 'audio/mpeg'],
    ['s.ogg', 'audio/ogg'],
    ['s.wav', 'audio/wav'],
    ['archive.tar.gz', 'application/gzip'],
    ['blob.qqq', DEFAULT_CONTENT_TYPE],
    ['Makefile', DEFAULT_CONTENT_TYPE],
    ['.hidden', DEFAULT_CONTENT_TYPE],
    ['trailing.', DEFAULT_CONTENT_TYPE],
  ])('%s -> %s', (path, type) => {
    expect(contentTypeFor(path)).toBe(type);
  });

  it('does not resolve inherited object keys as extensions', () => {
    expect(contentTypeFor('x.constructor')).toBe(DEFAULT_CONTENT_TYPE);
    expect(contentTypeFor('x.__proto__')).toBe(DEFAULT_CONTENT_TYPE);
  });
});
