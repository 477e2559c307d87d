package store

import (
	"reflect"
	"testing"
	"time"

	"vmsauth/auth"
)

func TestStateRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	for _, s := range []auth.Session{
		{UserID: 1, API: auth.APIClient, CreatedAt: at, LastSeen: at.Add(time.Minute), ExpiresAt: at.Add(time.Hour),
			ClientMeta: auth.ClientMeta{IP: "192.0.2.1"}},
		{UserID: 1 << 40, API: auth.APIIntegration, CreatedAt: at, LastSeen: at, ExpiresAt: at.Add(24 * time.Hour),
			Family: "0123456789abcdef0123456789abcdef", ClientMeta: auth.ClientMeta{IP: "2001:db8::1"}},
		{UserID: 7, API: auth.APIAdmin, CreatedAt: at, LastSeen: at, ExpiresAt: at},
	} {
		s.TokenHash[0] = byte(s.UserID)
		s.ID = s.TokenHash.SessionID()
		v, err := encodeState(&s)
		if err != nil {
			t.Fatal(err)
		}
		var got auth.Session
		if err := decodeState(s.TokenHash, v, &got); err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("state round trip = %+v, %v, want %+v", got, err, s)
		}
		api, expires, err := stateHead(v)
		if err != nil || api != s.API || !expires.Equal(s.ExpiresAt) {
			t.Fatalf("stateHead = %s %v %v", api, expires, err)
		}
	}
	m := auth.ClientMeta{UserAgent: "Xiaomi / M2102J20SG / 11 / 1.1.0 / Android", Client: "android", Device: "Redmi"}
	var got auth.ClientMeta
	if err := decodeDevice(encodeDevice(m), &got); err != nil || got != m {
		t.Fatalf("device round trip = %+v, %v", got, err)
	}
	if _, err := encodeState(&auth.Session{API: "other"}); err == nil {
		t.Fatal("a session of an unknown API was encoded")
	}
}

// FuzzDecodeState feeds the decoders damaged records: they must refuse
// them with an error, never panic.
func FuzzDecodeState(f *testing.F) {
	s := auth.Session{UserID: 3, API: auth.APIClient, CreatedAt: time.Now(), LastSeen: time.Now(),
		ExpiresAt: time.Now(), Family: "f", ClientMeta: auth.ClientMeta{IP: "192.0.2.1"}}
	v, _ := encodeState(&s)
	f.Add(v)
	f.Add(encodeDevice(auth.ClientMeta{UserAgent: "ua", Client: "web"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s auth.Session
		_ = decodeState(auth.TokenHash{}, b, &s)
		_, _, _ = stateHead(b)
		var m auth.ClientMeta
		_ = decodeDevice(b, &m)
	})
}

// TestCloneUserSharesNothing fills every field of a user and checks that
// the clone the user cache hands out shares no pointer, slice or map with
// the cached one, so a field added to auth.User later cannot leak.
func TestCloneUserSharesNothing(t *testing.T) {
	var u auth.User
	fill(reflect.ValueOf(&u).Elem())
	c := cloneUser(&u)
	if !reflect.DeepEqual(c, &u) {
		t.Fatalf("clone differs: %+v", c)
	}
	shared(t, "User", reflect.ValueOf(&u).Elem(), reflect.ValueOf(c).Elem())
}

// fill sets every field reachable from v to a non-zero value.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(1)
	}
}

// shared fails if a and b hold the same pointer, slice array or map
// anywhere.
func shared(t *testing.T, path string, a, b reflect.Value) {
	t.Helper()
	switch a.Kind() {
	case reflect.Pointer, reflect.Map:
		if !a.IsNil() && a.UnsafePointer() == b.UnsafePointer() {
			t.Errorf("%s is shared", path)
		}
		if a.Kind() == reflect.Pointer && !a.IsNil() {
			shared(t, path, a.Elem(), b.Elem())
		}
	case reflect.Slice:
		if a.Len() > 0 && a.UnsafePointer() == b.UnsafePointer() {
			t.Errorf("%s is shared", path)
		}
		for i := range min(a.Len(), b.Len()) {
			shared(t, path+"[]", a.Index(i), b.Index(i))
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() {
				shared(t, path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
			}
		}
	}
}
