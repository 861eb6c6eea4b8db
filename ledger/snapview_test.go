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
