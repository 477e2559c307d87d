// Package captcha will wrap github.com/dchest/captcha: image and audio
// captchas for the client API, with a bounded store that checks expiry. It
// imports nothing of vmsauth's own.
package captcha
