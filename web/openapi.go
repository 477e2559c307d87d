package web

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"

	"github.com/gin-gonic/gin"
)

// openAPI is the OpenAPI 3.1 document of every endpoint, served at
// /openapi.json so that integrators can generate clients from the box
// itself, offline. The web tests check every request and answer they make
// against it, so it cannot drift from the code.
//
//go:embed openapi.json
var openAPI []byte

// openAPIRoute serves the document. Like the page, it is revalidated on
// every use (ETag): it changes with the binary, and a client generated
// from a stale copy would be wrong without notice.
func openAPIRoute(r *gin.Engine) {
	sum := sha256.Sum256(openAPI)
	doc := pageFile{body: openAPI, contentType: "application/json", etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	r.GET("/openapi.json", func(c *gin.Context) { servePageFile(c, doc) })
}
