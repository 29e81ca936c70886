"""A LlamaIndex multimodal RAG pipeline on local embeddings, end to end.

What it does, in a temporary directory:

1. writes a folder of synthetic shape images with English caption files
   (``mmrag.demo_data.write_sample_folder``);
2. reads it with LlamaIndex's ``SimpleDirectoryReader`` (PNGs become
   ``ImageDocument``, ``.txt`` files ``Document``);
3. builds a ``MultiModalVectorStoreIndex`` whose texts and images live in two
   Chroma collections (cosine space), embedded by one
   :class:`mmrag.llama_index.LocalMultiModalEmbedding` used as both
   ``embed_model`` and ``image_embed_model`` (:func:`mmrag.llama_index.multimodal_index`,
   which also keeps ``file_path`` out of the embedded caption text);
4. persists it, loads it back, and retrieves text-to-image, image-to-image
   and text-to-text;
5. indexes the same folder with :class:`mmrag.MultimodalStore` and queries it
   through :class:`mmrag.llama_index.MultimodalStoreRetriever`, async included.

Run it (the bundled ``demo`` model needs no download)::

    python examples/llama_index_pipeline.py
    python examples/llama_index_pipeline.py --model siglip2-base-224 --n 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import chromadb
from chromadb.config import Settings
from llama_index.core import SimpleDirectoryReader, StorageContext, load_index_from_storage
from llama_index.core.schema import ImageNode, NodeWithScore
from llama_index.vector_stores.chroma import ChromaVectorStore

import mmrag
from mmrag.demo_data import write_sample_folder
from mmrag.llama_index import LocalMultiModalEmbedding, MultimodalStoreRetriever, multimodal_index

COSINE = {"hnsw": {"space": "cosine"}}


def chroma_stores(client: chromadb.ClientAPI) -> tuple[ChromaVectorStore, ChromaVectorStore]:
    """The text and image vector stores: two Chroma collections in cosine space.

    Args:
        client: A Chroma client.

    Returns:
        ``(text_store, image_store)``.
    """
    texts = client.get_or_create_collection("texts", configuration=COSINE, embedding_function=None)
    images = client.get_or_create_collection("images", configuration=COSINE, embedding_function=None)
    return ChromaVectorStore(chroma_collection=texts), ChromaVectorStore(chroma_collection=images)


def describe(result: NodeWithScore) -> str:
    """One line for a retrieved node: score, file name and, for images, their caption file.

    Args:
        result: A retrieved node.

    Returns:
        A printable line.
    """
    node = result.node
    if isinstance(node, ImageNode):
        path = Path(node.image_path or node.metadata.get("source") or "?")
        caption_file = path.with_suffix(".en.txt")
        caption = caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() else ""
        return f"  {result.score:.3f}  [image] {path.name}  ({caption})"
    return f"  {result.score:.3f}  [text]  {node.get_content().strip()[:60]}"


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline and print what each retrieval returns.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="mmrag model alias, hub id or directory (default: demo)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--n", type=int, default=24, help="number of sample images (default: 24)")
    parser.add_argument("--query", default="a red circle", help="text query")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mmrag-llama-index-") as tmp:
        root = Path(tmp)
        folder = root / "shapes"
        write_sample_folder(folder, n=args.n, languages=("en",))
        first_image = str(folder / "shape_000.png")

        embed = LocalMultiModalEmbedding(model=args.model, device=args.device)
        print(f"model: {embed.model_name} (dim {embed.encoder.dim}, device {embed.encoder.device})")

        # 1. Build: texts and images go to their own Chroma collection.
        client = chromadb.PersistentClient(path=str(root / "chroma"), settings=Settings(anonymized_telemetry=False))
        text_store, image_store = chroma_stores(client)
        storage = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
        documents = SimpleDirectoryReader(str(folder)).load_data()
        index = multimodal_index(documents, embed_model=embed, storage_context=storage)
        storage.persist(persist_dir=str(root / "index"))
        print(f"indexed {len(documents)} documents into {root / 'chroma'}")

        # 2. Reload from disk (as a later process would) and retrieve.
        text_store, image_store = chroma_stores(client)
        storage = StorageContext.from_defaults(
            vector_store=text_store, image_store=image_store, persist_dir=str(root / "index")
        )
        index = load_index_from_storage(storage, embed_model=embed, image_embed_model=embed)
        retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=3)

        print(f"\ntext -> image: {args.query!r}")
        for result in retriever.text_to_image_retrieve(args.query):
            print(describe(result))
        print(f"\nimage -> image: {Path(first_image).name}")
        for result in retriever.image_to_image_retrieve(first_image):
            print(describe(result))
        print(f"\ntext -> texts and images: {args.query!r}")
        for result in retriever.retrieve(args.query):
            print(describe(result))
        client.close()

        # 3. The same folder indexed by mmrag, queried through LlamaIndex.
        with mmrag.MultimodalStore(embed.encoder, path=root / "mmrag_db") as store:
            store.index_folder(folder)
            store_retriever = MultimodalStoreRetriever(store, k=3, batcher=embed.batcher)  # shared async batching
            print(f"\nMultimodalStoreRetriever, image -> text: {Path(first_image).name}")
            for result in store_retriever.image_to_text_retrieve(first_image):
                print(describe(result))

            async def both_directions() -> list[list[NodeWithScore]]:
                return await asyncio.gather(
                    store_retriever.atext_to_image_retrieve(args.query),
                    store_retriever.aimage_to_image_retrieve(first_image),
                )

            to_image, similar = asyncio.run(both_directions())
            print(f"\nasync text -> image: {args.query!r}")
            for result in to_image:
                print(describe(result))
            print(f"\nasync image -> image: {Path(first_image).name}")
            for result in similar:
                print(describe(result))
        embed.close()
    print("\ndone")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    sys.exit(main())
