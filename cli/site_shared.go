package cli

import (
	"context"
	"errors"
	"time"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/etcdstore"
)

// On a site box the login throttle and the captchas are the site's: their
// counters, the captcha keys already answered and the session-limit graces
// live in etcd (etcdstore.Shared), and so do the two secrets every box must
// hold alike, made by the first box that starts: the one that seals
// captcha keys (so a captcha drawn by one box is checked by another), and
// the key of the hash unknown logins are counted under (so their failures
// add up over the site). The box's own DATA/captcha-secret serves only
// when it runs alone.

// Names of the site's secrets in etcd (under secret/).
const (
	siteCaptchaSecret = "captcha-secret"
	siteThrottleKey   = "throttle-key"
	throttleKeySize   = 32
)

// siteShared is what a site box's throttle and captchas share.
type siteShared struct {
	shared        *etcdstore.Shared
	captchaSecret []byte
	throttleKey   []byte
}

// openSiteShared reads (or makes) the site's secrets. etcd answered the
// start's first-admin check a moment ago; should it not answer now, the
// box waits as that check does, then gives up for systemd to start it
// again: a site box cannot draw or check captchas without the site's
// secret.
func (a *app) openSiteShared(db *etcdstore.Store) (*siteShared, error) {
	sh := etcdstore.NewShared(db)
	ctx, cancel := context.WithTimeout(context.Background(), siteStartWait)
	defer cancel()
	for {
		cs, err := sh.Secret(ctx, siteCaptchaSecret, captcha.SecretSize)
		var tk []byte
		if err == nil {
			tk, err = sh.Secret(ctx, siteThrottleKey, throttleKeySize)
		}
		if err == nil {
			return &siteShared{shared: sh, captchaSecret: cs, throttleKey: tk}, nil
		}
		if !errors.Is(err, auth.ErrUnavailable) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// apply makes the captchas and the throttle the site's.
func (s *siteShared) apply(ccfg *captcha.Config, tcfg *auth.ThrottleConfig) {
	ccfg.Secret = s.captchaSecret
	ccfg.Used = s.shared
	ccfg.Graces = s.shared.Graces()
	tcfg.Shared = s.shared
	tcfg.HashKey = s.throttleKey
}

var (
	_ captcha.Used        = (*etcdstore.Shared)(nil)
	_ captcha.Graces      = etcdstore.Graces{}
	_ auth.SharedCounters = (*etcdstore.Shared)(nil)
)
