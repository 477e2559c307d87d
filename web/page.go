package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

// The technician's admin page (SPEC §7): one HTML file, two scripts (its
// texts in i18n.js, its code in app.js) and one style sheet, embedded so
// the box serves them with no network and no CDN. The page talks only to
// the admin API and keeps its token in sessionStorage, never in a cookie,
// so there is no CSRF surface.
//
//go:embed page
var pageFiles embed.FS

// assetPrefix is where the page's script, style sheet and icon are served.
// Only these paths and "/" serve the page; everything else stays the APIs'
// JSON 404.
const assetPrefix = "/assets/"

// pageCSP allows the page to load only its own files and to call only its
// own origin: no inline script or style, no frames, no plugins, no form
// posts elsewhere. An injected string can then neither run nor leak.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// pageTypes names the content type of each kind of embedded file; a file
// of another kind is not served.
var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// pageFile is one embedded file ready to serve.
type pageFile struct {
	body        []byte
	contentType string
	etag        string
}

// loadPage reads the embedded files once. The ETag lets a browser
// revalidate after an upgrade of the binary instead of keeping a stale
// script.
func loadPage() (map[string]pageFile, error) {
	files := map[string]pageFile{}
	err := fs.WalkDir(pageFiles, "page", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := pageTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		b, err := pageFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[strings.TrimPrefix(p, "page/")] = pageFile{
			body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
		return nil
	})
	return files, err
}

// pageRoutes serves the admin page at "/" and its assets under assetPrefix.
func (s *server) pageRoutes(r *gin.Engine) {
	files, err := loadPage()
	if err != nil {
		// The files are compiled in: a failure here is a broken build.
		panic("web: embedded page: " + err.Error())
	}
	index := files["index.html"]
	serveIndex := func(c *gin.Context) { servePageFile(c, index) }
	r.GET("/", serveIndex)
	r.HEAD("/", serveIndex)
	serveAsset := func(c *gin.Context) {
		name := c.Param("name")
		f, ok := files[name]
		if !ok || name == "index.html" {
			s.envelope(c).fault(c, faultNotFound)
			return
		}
		servePageFile(c, f)
	}
	r.GET(assetPrefix+":name", serveAsset)
	r.HEAD(assetPrefix+":name", serveAsset)
}

// servePageFile writes f with the page's security headers.
func servePageFile(c *gin.Context, f pageFile) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	// Revalidate every time: the files are small, and a technician must
	// never run an old script against a newer API after an upgrade.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if match := c.GetHeader("If-None-Match"); match != "" && etagMatches(match, f.etag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, f.contentType, f.body)
}

// etagMatches reports whether an If-None-Match header names etag.
func etagMatches(header, etag string) bool {
	for _, m := range strings.Split(header, ",") {
		m = strings.TrimPrefix(strings.TrimSpace(m), "W/")
		if m == etag || m == "*" {
			return true
		}
	}
	return false
}
