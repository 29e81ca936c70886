"""mmrag in LangChain, end to end: a multimodal retriever in an LCEL chain, and langchain_chroma.

What it does, all in a temporary directory and offline:

1. writes a folder of synthetic shape images with English captions
   (:func:`mmrag.demo_data.write_sample_folder`);
2. indexes it into an :class:`mmrag.MultimodalStore` with the bundled ``demo``
   model;
3. retrieves with :class:`mmrag.langchain.MultimodalStoreRetriever`: a text
   query, an image query (``invoke("", image=path)``) and a per-call ``modality``;
4. runs a RAG chain ``retriever | format | prompt | chat model`` (a fake chat
   model stands in for a real one, so nothing leaves the machine);
5. puts the same images into ``langchain_chroma.Chroma`` through
   :class:`mmrag.langchain.LocalMultiModalEmbeddings` and searches them by text
   and by image.

Run it with ``python examples/langchain_chain.py`` (``--model`` picks another
encoder: a preset alias, hub id or local directory).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path

import chromadb
from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

import mmrag
from mmrag.demo_data import write_sample_folder
from mmrag.langchain import LocalMultiModalEmbeddings, MultimodalStoreRetriever


def format_docs(docs: Sequence[Document]) -> str:
    """Render retrieved documents as numbered context lines for a prompt.

    Args:
        docs: Documents from :class:`MultimodalStoreRetriever`.

    Returns:
        One line per document: rank, modality, score, and the text or image path.
    """
    return "\n".join(
        f"[{rank}] {doc.metadata['modality']} (score {doc.metadata['score']:.3f}): "
        f"{Path(doc.page_content).name if doc.metadata['modality'] == 'image' else doc.page_content.strip()}"
        for rank, doc in enumerate(docs, 1)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="encoder: preset alias, hub id or directory (default: demo)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("-n", type=int, default=12, help="number of sample images (default: 12)")
    args = parser.parse_args(argv)

    encoder = mmrag.load_encoder(args.model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="mmrag-langchain-") as tmp:
        root = Path(tmp)
        write_sample_folder(root / "samples", n=args.n, languages=("en",))
        images = sorted(str(p) for p in (root / "samples").glob("*.png"))

        with mmrag.MultimodalStore(encoder, path=root / "db", collection="example") as store:
            print(f"indexed: {store.index_folder(root / 'samples', show_progress=False).summary()}")
            retriever = MultimodalStoreRetriever(store=store, k=3, modality="image")

            print("\ntext -> image: 'a red circle'")
            print(format_docs(retriever.invoke("a red circle")))
            print(f"\nimage -> image: {Path(images[0]).name}")
            print(format_docs(retriever.invoke("", image=images[0])))
            print("\ntext -> text (modality per call): 'a blue square'")
            print(format_docs(retriever.invoke("a blue square", modality="text")))

            prompt = ChatPromptTemplate.from_messages(
                [
                    ("system", "Answer from the retrieved images and captions only.\nContext:\n{context}"),
                    ("human", "{question}"),
                ]
            )
            model = FakeListChatModel(responses=["The best match is the first image in the context."])
            chain = (
                {"context": retriever.bind(modality=None) | format_docs, "question": RunnablePassthrough()}
                | prompt
                | model
                | StrOutputParser()
            )
            question = "Which picture shows a red circle?"
            print(f"\nchain.invoke({question!r}) -> {chain.invoke(question)!r}")
            answer = asyncio.run(chain.ainvoke(question))
            print(f"await chain.ainvoke(...) -> {answer!r}")

        embeddings = LocalMultiModalEmbeddings(encoder=encoder)
        client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        vectorstore = Chroma(
            collection_name="shapes",
            embedding_function=embeddings,
            client=client,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
        vectorstore.add_images(uris=images, metadatas=[{"source": path} for path in images])
        found = vectorstore.similarity_search_with_relevance_scores("a red circle", k=2)
        print("\nChroma, text -> image: " + ", ".join(f"{Path(d.metadata['source']).name} ({s:.3f})" for d, s in found))
        found_docs = vectorstore.similarity_search_by_image(uri=images[0], k=2)
        print("Chroma, image -> image: " + ", ".join(Path(d.metadata["source"]).name for d in found_docs))
        vectorstore.delete_collection()  # the in-memory client lives as long as the process
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
