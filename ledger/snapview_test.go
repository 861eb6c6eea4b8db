package ledger_test

import (
	"reflect"
	"testing"

	. "github.com/custody-dev/custody/ledger"
)

// TestSnapshotViewSharesNoMap: the snapshot view must own a copy of every
// map of the state, or later commands would show through it while the
// snapshot is encoded beside Apply (a data race and a torn snapshot). It
// walks State's fields by reflection, so a map added to State later without
// a copy in snapshotView fails here.
func TestSnapshotViewSharesNoMap(t *testing.T) {
	st := NewState()
	v := st.SnapshotView()
	sv, vv := reflect.ValueOf(st).Elem(), reflect.ValueOf(v).Elem()
	maps := 0
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		if !f.IsExported() || f.Type.Kind() != reflect.Map {
			continue
		}
		maps++
		if sv.Field(i).Pointer() == vv.Field(i).Pointer() {
			t.Errorf("State.%s: the snapshot view shares the live map", f.Name)
		}
	}
	if maps < 9 {
		t.Fatalf("found only %d maps in State", maps)
	}
}

// TestDecodeStateFillsEveryMap: a state decoded from an encoding without
// some maps (an older one, or "null") has every map, empty.
func TestDecodeStateFillsEveryMap(t *testing.T) {
	st, err := DecodeState([]byte(`{"voters":null}`))
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(st).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Map && f.IsNil() && v.Type().Field(i).IsExported() {
			t.Errorf("State.%s is nil after decoding", v.Type().Field(i).Name)
		}
	}
}
