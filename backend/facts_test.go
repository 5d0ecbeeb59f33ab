package backend

import (
	"reflect"
	"testing"

	"holdfast/link"
)

// TestFactsCarried fills every field of the facts as the link carries them
// and checks that each arrives in the game's Facts under the same name, so
// that a field added to one and not the other fails here.
func TestFactsCarried(t *testing.T) {
	var wire link.Facts
	wv := reflect.ValueOf(&wire).Elem()
	for i := range wv.NumField() {
		f := wv.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(wv.Type().Field(i).Name)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(100 + i))
		default:
			t.Fatalf("link.Facts.%s: a %s, which this test cannot fill", wv.Type().Field(i).Name, f.Kind())
		}
	}
	game := factsOf(&wire)
	gv := reflect.ValueOf(game)
	if gv.NumField() != wv.NumField() {
		t.Errorf("backend.Facts has %d fields, link.Facts %d", gv.NumField(), wv.NumField())
	}
	for i := range wv.NumField() {
		name := wv.Type().Field(i).Name
		g := gv.FieldByName(name)
		if !g.IsValid() {
			t.Errorf("backend.Facts has no %s", name)
			continue
		}
		var got, want any
		switch w := wv.Field(i); w.Kind() {
		case reflect.String:
			got, want = g.String(), w.String()
		default:
			want = w.Uint()
			switch g.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				got = uint64(g.Int())
			default:
				got = g.Uint()
			}
		}
		if got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}
