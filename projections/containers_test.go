package projections

import (
	"reflect"
	"strings"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// A container encodes, as a checkpoint encodes it, byte for byte as the
// journal.Container it was made from, and one an older binary's
// checkpoint holds (with the spec hash it wrote) decodes.
func TestContainerEncodesAsJournals(t *testing.T) {
	for _, jc := range []journal.Container{
		{Name: "app", Image: "app:v1"},
		{Name: "app", Image: "app:v1", ImageID: "sha256:aa", ContainerID: "containerd://" + strings.Repeat("0f", 32), RestartCount: 3, Ready: true, Started: true,
			State: "terminated:Error", StatusImage: "app:v0", Requests: map[string]string{"cpu": "1"}, Limits: map[string]string{"memory": "1Gi"},
			ActualRequests: map[string]string{"cpu": "2"}, ActualLimits: map[string]string{"memory": "2Gi"}, RestartAlways: true},
	} {
		a, err := journal.EncodeBody(NewContainer(jc))
		if err != nil {
			t.Fatal(err)
		}
		b, err := journal.EncodeBody(&jc)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatalf("a Container encodes as\n%x\nits journal.Container as\n%x", a, b)
		}
		var back Container
		if err := journal.DecodeBody(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Journal(), jc) {
			t.Fatalf("decoded %+v, want %+v", back.Journal(), jc)
		}
	}
	older := struct {
		Name     string `cbor:"1,keyasint"`
		Image    string `cbor:"2,keyasint"`
		SpecHash []byte `cbor:"14,keyasint"`
	}{"app", "app:v1", []byte{1, 2, 3}}
	b, err := journal.EncodeBody(&older)
	if err != nil {
		t.Fatal(err)
	}
	var back Container
	if err := journal.DecodeBody(b, &back); err != nil || back.Name != "app" || back.Image != "app:v1" {
		t.Fatalf("an older container decodes as %+v (%v)", back.Journal(), err)
	}
}
