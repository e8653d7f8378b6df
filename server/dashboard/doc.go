// Package dashboard shows the fleet to operators as server-rendered web
// pages.
//
// It reads everything through a Source, a small interface the server
// implements from its state, and renders html/template pages with
// embedded CSS and server-drawn SVG charts: no JavaScript, no external
// resources, nothing a browser fetches from elsewhere. Whatever a node
// sent (facts, report strings) is treated as hostile: html/template
// escapes it, and control characters (terminal escapes) are shown as
// visible \x1b-style text. The handler sets a Content-Security-Policy
// that allows no inline script, X-Frame-Options DENY and nosniff.
//
// The handler has no authentication of its own: the server mounts it
// behind the HTTP port's.
package dashboard
