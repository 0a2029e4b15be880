package plugins

import (
	"testing"

	sdkplugin "github.com/privateconnect/pc/sdk/plugin"
)

// decider reads the step tag a HandleSteps module sets (the SDK's StepTag)
// and falls back to the module's own id on anything else.
func TestAttachmentDecider(t *testing.T) {
	if stepTag != sdkplugin.StepTag {
		t.Fatalf("host step tag %q, SDK %q", stepTag, sdkplugin.StepTag)
	}
	a := &Attachment{PluginID: "bundle", StepIDs: []string{"a", "b"}}
	for _, tc := range []struct{ msg, id, reason string }{
		{"step 1", "b", ""},
		{"step 0: bad config", "a", "bad config"},
		{"step 2: out of range", "bundle", "step 2: out of range"},
		{"step x", "bundle", "step x"},
		{"plugin panic: boom", "bundle", "plugin panic: boom"},
		{"", "bundle", ""},
	} {
		id, reason := a.decider(tc.msg, "bundle")
		if id != tc.id || reason != tc.reason {
			t.Errorf("decider(%q) = %q, %q; want %q, %q", tc.msg, id, reason, tc.id, tc.reason)
		}
	}
}
