package gateway

import (
	"bytes"
	"encoding/gob"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// fill sets every field of v, recursively, to something not zero, so
// that a field a move forgets shows up as a difference.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Unix(1_800_000_000, 0).UTC()))
		return
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.MustParseAddr("192.0.2.7")))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				t.Fatalf("%s.%s: a record's fields must be exported to be carried", path, f.Name)
			}
			fill(t, v.Field(i), path+"."+f.Name)
		}
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(t, s.Index(0), path+"[0]")
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fill(t, v.Index(i), path+"[i]")
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), path)
		v.Set(p)
	default:
		t.Fatalf("%s: a field of kind %v: teach fill about it", path, v.Kind())
	}
}

// TestRecordCarried: every field of a session's record, its parts'
// included, survives its encoding, and every field the session itself
// keeps survives a move to another process and back out of it.
func TestRecordCarried(t *testing.T) {
	var want record
	fill(t, reflect.ValueOf(&want).Elem(), "record")
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a record changed on its way:\n got %+v\nwant %+v", got, want)
	}

	// Through a session: saved, encoded in a batch, arrived in another
	// process's server, saved again.
	srv := &Server{Logger: zaptest.NewLogger(t)}
	srv.init()
	t.Cleanup(func() { srv.Close() })
	a, b2 := net.Pipe()
	t.Cleanup(func() { a.Close(); b2.Close() })
	s := newSession(srv, "x", a, a.RemoteAddr(), netip.Addr{})
	s.record = want
	s.Parts = nil
	sent := s.save()
	sent.Parts.Conn = []byte("the page's part")
	enc, err := marshalBatch([]record{sent})
	if err != nil {
		t.Fatal(err)
	}
	to := &Server{Logger: zaptest.NewLogger(t), Reconnect: func(state []byte) (net.Conn, error) {
		if string(state) != "the page's part" {
			t.Errorf("the connection's part arrived as %q", state)
		}
		c, _ := net.Pipe()
		return c, nil
	}}
	to.init()
	t.Cleanup(func() { to.Close() })
	recs, err := unmarshalBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	arrived, err := to.arrive(&recs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	again := arrived.save()
	again.Parts, sent.Parts = nil, nil
	if !reflect.DeepEqual(again, sent) {
		t.Fatalf("a session's record changed in a move:\n got %+v\nwant %+v", again, sent)
	}
}

// TestRecordFormat: a record of another format is refused with a reason.
func TestRecordFormat(t *testing.T) {
	for _, b := range [][]byte{nil, {recordVersion + 1, 0}, {0}} {
		var r record
		if err := r.UnmarshalBinary(b); err == nil || !strings.Contains(err.Error(), "format") {
			t.Errorf("UnmarshalBinary(%v) = %v, want a refusal naming the format", b, err)
		}
		if _, err := unmarshalBatch(b); err == nil || !strings.Contains(err.Error(), "format") {
			t.Errorf("unmarshalBatch(%v) = %v, want a refusal naming the format", b, err)
		}
	}
}

// BenchmarkBatch measures encoding and decoding an upgrade's batch of 200
// sessions' records.
//
//	go test -run - -bench Batch ./gateway/
func BenchmarkBatch(b *testing.B) {
	var one record
	fill(&testing.T{}, reflect.ValueOf(&one).Elem(), "record")
	recs := make([]record, 200)
	for i := range recs {
		recs[i] = one
	}
	b.ReportAllocs()
	for b.Loop() {
		enc, err := marshalBatch(recs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := unmarshalBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzUnmarshalBatch feeds the decoder of an upgrade's batch what another
// process might send: it refuses or decodes, never panics, and what it
// decodes encodes again to a batch it reads the same.
func FuzzUnmarshalBatch(f *testing.F) {
	var one record
	fill(&testing.T{}, reflect.ValueOf(&one).Elem(), "record")
	if b, err := marshalBatch([]record{one, {ID: "k-2"}}); err == nil {
		f.Add(b)
	}
	f.Add([]byte{recordVersion})
	f.Add([]byte{recordVersion + 1, 1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, err := unmarshalBatch(in)
		if err != nil {
			return
		}
		again, err := marshalBatch(recs)
		if err != nil {
			t.Fatalf("a decoded batch does not encode: %v", err)
		}
		back, err := unmarshalBatch(again)
		if err != nil || len(back) != len(recs) {
			t.Fatalf("a batch encoded again reads as %d records, %v; want %d", len(back), err, len(recs))
		}
	})
}

// TestLegacyBatch: a batch as the gateways before record formats sent it
// (gob of their flat session, no version) is read, every field in its
// place, so that such a gateway can upgrade to this one.
func TestLegacyBatch(t *testing.T) {
	var old legacySession
	fill(t, reflect.ValueOf(&old).Elem(), "legacySession")
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode([]legacySession{old}); err != nil {
		t.Fatal(err)
	}
	recs, err := unmarshalBatch(buf.Bytes())
	if err != nil || len(recs) != 1 {
		t.Fatalf("a legacy batch: %d records, %v", len(recs), err)
	}
	var want record
	fill(t, reflect.ValueOf(&want).Elem(), "record")
	want.OutOff = 0    // counted only since: a legacy session was no browser's to claim elsewhere
	want.Quiet = false // a legacy session is opened, as it was then
	if !reflect.DeepEqual(recs[0], want) {
		t.Fatalf("a legacy session read as\n %+v\nwant\n %+v", recs[0], want)
	}
}
