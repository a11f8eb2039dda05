namespace EdgeMl.ModelTools;

/// <summary>Bad input to the model toolchain: the message says what was wrong and where (a file, a node, an input).</summary>
public sealed class ModelToolException(string message, Exception? inner = null) : Exception(message, inner);
